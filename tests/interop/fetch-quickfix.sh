#!/bin/sh
# QuickFIX's acceptance-test harness (test/: Runner.rb and the scenario
# definitions) and its FIX 4.4 data dictionary (spec/FIX44.xml), from the
# Debian source package, into $1 (default build/quickfix). The machine's own
# apt sources are used, read as deb-src; nothing of the system's apt state
# is changed.
set -eu
out=${1:-build/quickfix}
[ -f "$out/test/Runner.rb" ] && [ -f "$out/spec/FIX44.xml" ] && exit 0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/parts" "$work/lists/partial"
for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && { sed 's/^Types:.*/Types: deb-src/' "$f"; echo; }
done > "$work/parts/source.sources"
cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    sed -n 's/^deb \(.*\)/deb-src \1/p' > "$work/source.list"
apt="apt-get -qq -o APT::Sandbox::User=root -o Dir::Etc::SourceList=$work/source.list
     -o Dir::Etc::SourceParts=$work/parts
     -o Dir::State::Lists=$work/lists -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache="
$apt update
(cd "$work" && $apt source --download-only quickfix 2>/dev/null)
mkdir -p "$work/src"
tar -xf "$work"/quickfix_*.orig.tar.* -C "$work/src"
mkdir -p "$out/spec"
cp -r "$work"/src/*/test "$out/"
cp "$work"/src/*/spec/FIX44.xml "$out/spec/"
