# Sourced by the build scripts of apps made from Debian packages.
#
# fetch_debs DIR "pkg=version sha256"... downloads each pinned package with
# apt-get, checks its sha256 and unpacks it into DIR; a package whose
# digest differs stops the build.
fetch_debs() {
	local dir="$1" d pkg version want deb got tmp
	shift
	tmp="$(mktemp -d)"
	for d in "$@"; do
		set -- $d
		pkg="${1%%=*}" version="${1#*=}" want="$2"
		(cd "$tmp" && apt-get download -q=2 -o APT::Sandbox::User=root "$pkg=$version")
		deb="$(ls "$tmp/${pkg}_"*.deb)"
		got="$(sha256sum "$deb" | cut -d' ' -f1)"
		if [ "$got" != "$want" ]; then
			echo "$(basename "$deb"): sha256 $got, want $want" >&2
			rm -rf "$tmp"
			return 1
		fi
		dpkg-deb -x "$deb" "$dir"
		rm "$deb"
	done
	rm -rf "$tmp"
}
