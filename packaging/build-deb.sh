#!/usr/bin/env bash
# Builds the compartment .deb with dpkg-deb: release binaries (stripped), the systemd
# units, /etc/default/compartmentd, man pages and shell completions (rendered from the
# clap definitions by the compartment-assets crate), docs and maintainer scripts.
#
# Usage: packaging/build-deb.sh [--version UPSTREAM-REVISION] [--out-dir DIR]
#
# The version defaults to the top entry of packaging/deb/changelog; another one gets a
# changelog entry of its own. Its upstream part must be the crates' version. Needs cargo,
# dpkg-dev (dpkg-shlibdeps, dpkg-parsechangelog) and binutils (strip). Builds into
# $CARGO_TARGET_DIR (default: target/) and writes the package to --out-dir (default:
# that directory's debian/). Progress goes to stderr; stdout gets the package's path.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
meta="$here/deb"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac

version=""
out_dir="$target/debian"
while [ $# -gt 0 ]; do
    case "$1" in
        --version) version="${2:?--version needs a value}"; shift 2 ;;
        --version=*) version="${1#--version=}"; shift ;;
        --out-dir) out_dir="${2:?--out-dir needs a value}"; shift 2 ;;
        --out-dir=*) out_dir="${1#--out-dir=}"; shift ;;
        -h|--help) sed -n '2,/^set -euo/{/^set/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) echo "build-deb.sh: unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
done

die() { echo "build-deb.sh: $*" >&2; exit 1; }
# Progress goes to stderr: stdout carries only the package's path, for scripts.
say() { echo "$*" >&2; }
for tool in cargo dpkg-deb dpkg-shlibdeps dpkg-parsechangelog strip gzip; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install dpkg-dev binutils)"
done

changelog_version="$(dpkg-parsechangelog -l "$meta/changelog" -S Version)"
version="${version:-$changelog_version}"
# Debian revision required: the package is not native, so its changelog is
# changelog.Debian.gz.
[[ "$version" =~ ^([0-9]+:)?[0-9][A-Za-z0-9.+~]*-[A-Za-z0-9.+~]+$ ]] \
    || die "version $version is not UPSTREAM-REVISION, e.g. 0.1.0-2"
upstream="${version#*:}"
upstream="${upstream%-*}"

say "==> cargo build --release (compartmentd, compartmentctl, compartment-assets)"
(cd "$root" && cargo build --release --locked \
    -p compartmentd -p compartmentctl -p compartment-assets)
release="$target/release"
crate_version="$("$release/compartmentd" --version | awk '{print $2}')"
[ "$upstream" = "$crate_version" ] \
    || die "version $version does not match the crates' version $crate_version"

umask 022
work="$target/debian/work"
pkg="$work/debian/compartment"   # the package's root; debian/control is for dpkg-shlibdeps
rm -rf "$work"
mkdir -p "$pkg/DEBIAN"

say "==> changelog for $version"
changelog="$work/changelog"
if [ "$version" = "$changelog_version" ]; then
    cp "$meta/changelog" "$changelog"
else
    maintainer="$(dpkg-parsechangelog -l "$meta/changelog" -S Maintainer)"
    commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    when="$(date -R ${SOURCE_DATE_EPOCH:+-d "@$SOURCE_DATE_EPOCH"})"
    {
        echo "compartment ($version) unstable; urgency=medium"
        echo
        echo "  * Built from the sources at commit $commit."
        echo
        echo " -- $maintainer  $when"
        echo
        cat "$meta/changelog"
    } >"$changelog"
fi
# Timestamps in the package and the man pages' date come from the changelog, so that
# building the same sources twice gives the same package.
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(dpkg-parsechangelog -l "$changelog" -S Timestamp)}"
date="$(date -u -d "@$SOURCE_DATE_EPOCH" +%F)"

say "==> files"
install -d -m 0755 "$pkg/usr/sbin" "$pkg/usr/bin"
for bin in sbin/compartmentd bin/compartmentctl; do
    strip --remove-section=.comment --remove-section=.note \
        -o "$pkg/usr/$bin" "$release/$(basename "$bin")"
    chmod 0755 "$pkg/usr/$bin"
done
# Run as `compartment`, the CLI names itself that way in its errors.
ln -s compartmentctl "$pkg/usr/bin/compartment"

# bookworm's debhelper and systemd.pc put system units in /lib/systemd/system.
# compartmentd-page.socket is shipped off: an operator who serves the activation page
# enables it (docs/operations.md, "The activation page").
for unit in compartmentd.socket compartmentd-page.socket compartmentd.service; do
    install -D -m 0644 "$root/systemd/$unit" "$pkg/lib/systemd/system/$unit"
done

assets="$work/assets"
"$release/compartment-assets" "$assets" --date "$date" >&2
install -D -m 0644 "$assets/default/compartmentd" "$pkg/etc/default/compartmentd"
for section_dir in "$assets"/man/man*; do
    section="$(basename "$section_dir")"
    install -d -m 0755 "$pkg/usr/share/man/$section"
    for page in "$section_dir"/*; do
        gzip -9n -c "$page" >"$pkg/usr/share/man/$section/$(basename "$page").gz"
    done
done
ln -s compartmentctl.1.gz "$pkg/usr/share/man/man1/compartment.1.gz"
for name in compartmentctl compartment; do
    install -D -m 0644 "$assets/completions/bash/$name" \
        "$pkg/usr/share/bash-completion/completions/$name"
    install -D -m 0644 "$assets/completions/zsh/_$name" \
        "$pkg/usr/share/zsh/vendor-completions/_$name"
    install -D -m 0644 "$assets/completions/fish/$name.fish" \
        "$pkg/usr/share/fish/vendor_completions.d/$name.fish"
done

doc="$pkg/usr/share/doc/compartment"
install -D -m 0644 "$meta/copyright" "$doc/copyright"
gzip -9n -c "$changelog" >"$doc/changelog.Debian.gz"
# lintian asks a first upload (a single changelog entry, revision 1) to close its ITP
# bug. This package is not in Debian: the override says so, shipped only while the tag
# applies, since an unused override is a tag of its own.
if [ "$(grep -c '^compartment (' "$changelog")" = 1 ] && [[ "$version" == *-1 ]]; then
    install -D -m 0644 "$meta/lintian-overrides" "$pkg/usr/share/lintian/overrides/compartment"
fi

say "==> DEBIAN/"
for script in postinst prerm postrm; do
    install -m 0755 "$meta/$script" "$pkg/DEBIAN/$script"
done
install -m 0644 "$meta/conffiles" "$pkg/DEBIAN/conffiles"

# dpkg-shlibdeps wants a debian/control naming the package it computes for.
printf 'Source: compartment\n\nPackage: compartment\nArchitecture: any\n' \
    >"$work/debian/control"
depends="$(cd "$work" && dpkg-shlibdeps -O \
    -edebian/compartment/usr/sbin/compartmentd -edebian/compartment/usr/bin/compartmentctl)"
depends="${depends#shlibs:Depends=}"
[ -n "$depends" ] || die "dpkg-shlibdeps found no dependencies"

# md5sums of every file but the conffiles, whose sums dpkg keeps itself.
(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort \
    | grep -vxF -f <(sed 's|^/||' DEBIAN/conffiles) | xargs -d '\n' md5sum) \
    >"$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/md5sums"

installed_size="$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)"
maintainer="$(dpkg-parsechangelog -l "$changelog" -S Maintainer)"
arch="$(dpkg --print-architecture)"
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@MAINTAINER@|$maintainer|" \
    -e "s|@INSTALLED_SIZE@|$installed_size|" -e "s|@DEPENDS@|$depends|" \
    "$meta/control.in" >"$pkg/DEBIAN/control"
chmod 0644 "$pkg/DEBIAN/control"

say "==> dpkg-deb --build"
mkdir -p "$out_dir"
deb="$out_dir/compartment_${version#*:}_$arch.deb"
dpkg-deb --root-owner-group --build "$pkg" "$deb" >/dev/null
dpkg-deb --info "$deb" | sed -n '/^ Package:/,/^ Description:/p' >&2
echo "$deb"
