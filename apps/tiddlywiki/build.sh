#!/usr/bin/env bash
# Builds the TiddlyWiki app tree in OUT (default build/apps-real/tiddlywiki)
# from the pinned npm release: nothing of TiddlyWiki is in this repository.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../../build/apps-real/tiddlywiki}"
version=5.4.1
integrity='sha512-5Pnk7j8cUMoQHD0CarOWd4ixITURsN4DJxLfg8AGYSMiQoOHH6bp8JDCAgSdvZHRCQmvXtbm5FRxBFBT6WG24A=='

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "tiddlywiki@$version" >/dev/null)
tgz="$tmp/tiddlywiki-$version.tgz"
got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
if [ "$got" != "$integrity" ]; then
	echo "tiddlywiki-$version.tgz: integrity $got, want $integrity" >&2
	exit 1
fi

rm -rf "$out"
mkdir -p "$out/app/tiddlywiki" "$out/dev" "$out/proc" "$out/tmp" "$out/var"
tar xzf "$tgz" -C "$out/app/tiddlywiki" --strip-components=1 --no-same-owner
# A grain needs only the server edition, which its first start copies to
# /var/wiki; the other 46 editions are TiddlyWiki's documentation sites.
find "$out/app/tiddlywiki/editions" -mindepth 1 -maxdepth 1 ! -name server -exec rm -rf {} +
cp "$here/start.js" "$here/erg.json" "$here/erg-files.list" "$out/"
mv "$out/start.js" "$out/app/start.js"
chmod -R a+rX "$out"
echo "$out"
