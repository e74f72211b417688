package store

import "context"

// OpenAtVersion opens cfg's database migrating it only to schema version k, as the release that
// ended with migration k left it.
func OpenAtVersion(ctx context.Context, cfg Config, k int) (*Store, error) {
	return open(ctx, cfg, k)
}

// ExecSQL runs one statement, for tests that fill tables no method of this build writes the way an
// older release did.
func (s *Store) ExecSQL(ctx context.Context, query string, args ...any) error {
	_, err := s.exec(ctx, query, args...)
	return err
}

// CountRows returns the number of rows in table, a name the test chose.
func (s *Store) CountRows(ctx context.Context, table string) (int, error) {
	var n int
	err := s.queryRow(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n)
	return n, err
}
