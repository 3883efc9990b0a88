#!/usr/bin/env bash
# Builds the Etherpad app tree in OUT (default build/apps-real/etherpad)
# from the pinned npm release ep_etherpad-lite 1.8.14 and the dependency
# tree pinned in package-lock.json: nothing of Etherpad is in this
# repository.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../../build/apps-real/etherpad}"
version=1.8.14
integrity='sha512-w3TRnwsozofewLCRkHV8/Afzyc4yXmQfoYSGEy/aGkGWFtgFYu/VDyPYDedvFQtANqPsHNArtmUPNVuw8nSLKg=='

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "ep_etherpad-lite@$version" >/dev/null)
tgz="$tmp/ep_etherpad-lite-$version.tgz"
got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
if [ "$got" != "$integrity" ]; then
	echo "ep_etherpad-lite-$version.tgz: integrity $got, want $integrity" >&2
	exit 1
fi

rm -rf "$out"
ep="$out/app/etherpad"
mkdir -p "$ep/src" "$ep/node_modules" "$out/dev" "$out/proc" "$out/tmp" "$out/var"
tar xzf "$tgz" -C "$ep/src" --strip-components=1 --no-same-owner
# The release's package.json names its development tools too, one of which
# needs a package from GitHub (which the registry can't serve), and lets
# ueberdb2 float to a release whose optional sqlite3 comes from GitHub:
# drop the first, pin the second, and install exactly the tree in
# package-lock.json (made once with npm install --omit=dev --omit=optional).
node -e '
const fs = require("fs"), f = process.argv[1], p = JSON.parse(fs.readFileSync(f));
delete p.devDependencies; p.dependencies.ueberdb2 = "1.4.7";
fs.writeFileSync(f, JSON.stringify(p, null, 2) + "\n");' "$ep/src/package.json"
cp "$here/package-lock.json" "$ep/src/package-lock.json"
(cd "$ep/src" && npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)

# Etherpad's layout: its root holds settings.json, node_modules with
# ep_etherpad-lite (the src dir) and the plugins it finds with `npm ls`,
# and var/, where it writes its asset cache. var is a link to the grain's
# /var (relative, so it stays inside the package).
ln -s ../src "$ep/node_modules/ep_etherpad-lite"
cp -r "$here/ep_erg" "$ep/node_modules/ep_erg"
cp "$here/settings.json" "$ep/settings.json"
# On its first start Etherpad writes .ep_initialized into each plugin's
# directory (after calling the plugin's init hook, which neither has): in a
# read-only package they must be there already.
echo done >"$ep/src/.ep_initialized"
echo done >"$ep/node_modules/ep_erg/.ep_initialized"
ln -s ../../var "$ep/var"
cp "$here/erg.json" "$here/erg-files.list" "$out/"
chmod -R a+rX "$out"
echo "$out"
