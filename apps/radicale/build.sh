#!/usr/bin/env bash
# Builds the Radicale app tree in OUT (default build/apps-real/radicale)
# from the pinned Debian 12 packages: nothing of Radicale is in this
# repository. The machine's own /usr/bin/python3 (3.11, traced into
# erg-files.list) runs it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../../build/apps-real/radicale}"

# Debian bookworm's python3-radicale and the Python libraries it imports
# (python3-passlib and python3-pkg-resources, which it also depends on,
# serve only htpasswd logins and Pythons before 3.9: left out).
debs=(
	"python3-radicale=3.1.8-2 9cca658379c15240158a801ceb2d69eec300812bb24aa12b837b03641413cfeb"
	"python3-vobject=0.9.6.1-2 dec480e45743dbf29c518a3571c61aefd7b635cdf8ba39ed410e42d782757500"
	"python3-dateutil=2.8.2-2 59d696282ffeaf54395452e012715410dc414c6baaa54d4cdae56ac7c217eb31"
	"python3-defusedxml=0.7.1-2 bf54cf2db1e66170033596a93ef53e4cb08e59fefbdfc5953c68d8b1b1795d5b"
	"python3-six=1.16.0-4 fd189e9cecbcf17a1fc20aec30055c8afa9c1eec00cd6e7ab385087a2ab3b0d3"
)

. "$here/../debs.sh"
rm -rf "$out"
mkdir -p "$out/app/radicale" "$out/dev" "$out/proc" "$out/tmp" "$out/var"
fetch_debs "$out/app/radicale" "${debs[@]}"
# Only the Python modules are used; Debian's docs and metadata for them
# stay out of the package (the .egg-info dirs stay: Radicale reads its
# version from its own).
rm -rf "$out/app/radicale/usr/share"
cp "$here/start.py" "$out/app/start.py"
# A grain's tree is read-only, so Python could never write its bytecode
# cache there and would compile Radicale and its libraries at every start:
# compile them now with the interpreter the package carries, checked by
# hash, not by the files' times (which packing need not keep).
/usr/bin/python3 -m compileall -q -j0 --invalidation-mode unchecked-hash "$out/app"
cp "$here/erg.json" "$here/erg-files.list" "$out/"
chmod -R a+rX "$out"
echo "$out"
