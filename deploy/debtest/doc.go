// Package debtest holds no code: its tests build the Debian packages the
// way `make deb` does and check them for real: their contents and metadata,
// lintian, the unit's exposure (systemd-analyze), an install with apt in a
// minimal bookworm chroot, an upgrade that keeps the configuration, keys and
// state, a purge, the arm64 binary under qemu-user-static, and the model
// script. The slow parts (the chroot, the arm64 sysroot, apt's downloads)
// are made once in testenv.DebCache, outside the checkout.
package debtest
