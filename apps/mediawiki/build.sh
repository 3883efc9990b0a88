#!/usr/bin/env bash
# Builds the MediaWiki app tree in OUT (default build/apps-real/mediawiki)
# from the pinned Debian 12 packages: nothing of MediaWiki is in this
# repository. The machine's own PHP 8.2 (php-cli with the sqlite3, intl,
# mbstring and xml modules, traced into erg-files.list) runs it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../../build/apps-real/mediawiki}"

# The PHP modules MediaWiki needs must be on this machine: the package
# carries the host's php and the modules erg app dev saw it load.
# (php -m is read once, not piped into grep -q: under pipefail, grep
# leaving at its first match can kill php with SIGPIPE mid-list, and the
# module would count as missing.)
mods="$(php -m 2>/dev/null || true)"
missing=()
for m in pdo_sqlite intl mbstring xml; do
	grep -qix "$m" <<<"$mods" || missing+=("$m")
done
if ((${#missing[@]})); then
	echo "mediawiki needs the PHP modules ${missing[*]}: apt-get install php-cli php-sqlite3 php-intl php-mbstring php-xml" >&2
	exit 1
fi

debs=(
	"mediawiki=1:1.39.17-1+deb12u2 dee6a9e1f11cf72ff9764f94815df980e120102984d15d489af079de7e980bba"
	"mediawiki-classes=1:1.39.17-1+deb12u2 c5a10bbb4738ee69f54fed22eec4514a7cec95b500cfc355f58a76817a8ff944"
)

. "$here/../debs.sh"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/x"
fetch_debs "$tmp/x" "${debs[@]}"

rm -rf "$out"
mkdir -p "$out/app" "$out/dev" "$out/proc" "$out/tmp" "$out/var"
mv "$tmp/x/usr/share/mediawiki" "$out/app/mediawiki"
mw="$out/app/mediawiki"
# Debian links the wiki's writable and configuration paths to /etc and
# /var/lib; in a grain they are erg's LocalSettings.php and /var. The
# bundled extensions (98 MB) are not loaded.
rm -rf "$mw/LocalSettings.php" "$mw/config" "$mw/images" "$mw/extensions" "$mw/extensions-core"
mkdir "$mw/extensions"
cp "$here/start.php" "$here/router.php" "$here/LocalSettings.php" "$here/ErgSessionProvider.php" "$out/app/"
cp "$here/erg.json" "$here/erg-files.list" "$out/"
chmod -R a+rX "$out"
echo "$out"
