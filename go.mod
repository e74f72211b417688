module x0tta6bl4

go 1.27

toolchain go1.27.4

require golang.org/x/crypto v0.58.0

require golang.org/x/sys v0.49.0 // indirect
