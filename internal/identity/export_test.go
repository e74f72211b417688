package identity

// MaxKeyFileSize exposes the key file size limit to the external tests.
const MaxKeyFileSize = maxKeyFileSize
