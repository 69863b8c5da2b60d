#!/bin/sh
# debroot.sh ARCH KIND DIR: make a Debian bookworm tree for ARCH (amd64,
# arm64) in DIR, unless DIR is already there, for `make deb` and the
# package tests. DIR is a cache outside the checkout: it is made once, in
# DIR.tmp, and renamed when complete.
#
#   KIND sysroot: the arm64 libraries and headers consentcam's cgo build
#                 links against (libopencv-dev, libc6-dev, libstdc++-12-dev),
#                 unpacked only (mmdebstrap --variant=extract), also the
#                 library root qemu-aarch64-static runs the arm64 binary in.
#   KIND chroot:  a minimal bookworm (debootstrap --variant=minbase) to
#                 install the package in with apt.
#
# The archive is $CONSENTCAM_DEB_MIRROR, else the bookworm main archive this
# machine's apt is configured with (apt-get indextargets).
set -eu
arch=$1 kind=$2 dir=$3
suite=bookworm

# fixlinks ROOT: what dpkg's maintainer scripts would have done in an
# unpacked-only tree, for the linker and the loader: the BLAS and LAPACK
# alternatives OpenCV links against, and absolute symbolic links made
# relative, so that they point into ROOT rather than at this machine.
fixlinks() {
	lib=$1/usr/lib/aarch64-linux-gnu
	[ -e "$lib/libblas.so.3" ] || ln -s blas/libblas.so.3 "$lib/libblas.so.3"
	[ -e "$lib/liblapack.so.3" ] || ln -s lapack/liblapack.so.3 "$lib/liblapack.so.3"
	find "$1/usr/lib" -type l -lname '/*' | while read -r link; do
		ln -sfr "$1$(readlink "$link")" "$link"
	done
}

if [ -e "$dir/.complete" ]; then
	exit 0
fi
mirror=${CONSENTCAM_DEB_MIRROR:-$(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(IDENTIFIER)' |
	awk -v s=$suite '$2 == s && $3 == "Packages" { print $1; exit }')}
if [ -z "$mirror" ]; then
	echo "debroot.sh: no $suite archive in this machine's apt sources: set CONSENTCAM_DEB_MIRROR" >&2
	exit 1
fi
rm -rf "$dir.tmp"
mkdir -p "$(dirname "$dir")"
echo "debroot.sh: making a $suite $arch $kind in $dir from $mirror (once; later runs reuse it)"
case $kind in
sysroot)
	mmdebstrap --quiet --variant=extract --arch="$arch" \
		--include=libopencv-dev,libc6-dev,libstdc++-12-dev,opencv-data \
		"$suite" "$dir.tmp" "$mirror"
	fixlinks "$dir.tmp"
	;;
chroot)
	debootstrap --variant=minbase --arch="$arch" "$suite" "$dir.tmp" "$mirror"
	echo "deb $mirror $suite main" >"$dir.tmp/etc/apt/sources.list"
	;;
*)
	echo "debroot.sh: KIND is sysroot or chroot, not $kind" >&2
	exit 2
	;;
esac
touch "$dir.tmp/.complete"
rm -rf "$dir"
mv "$dir.tmp" "$dir"
