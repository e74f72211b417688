//go:build goexperiment.runtimesecret

package session

import "runtime/secret"

// withSecret runs f so that the heap memory it allocates (the AEAD key schedules) is erased once
// it becomes unreachable.
func withSecret(f func()) { secret.Do(f) }
