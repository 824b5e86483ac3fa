# Packages: fetched from dhctl's packages endpoint, every file checked against the sha256 of the
# version map, then installed. An installed package is recorded with its version and sums, so an
# unchanged package is not fetched again.
pkg_state=/var/lib/dhctl/packages
mkdir -p "$pkg_state"

# install_package NAME VERSION DEST (FILE SHA256)...
install_package() {
	local name=$1 version=$2 dest=$3
	shift 3
	local want="$version $*"
	if [[ -f "$pkg_state/$name" && "$(cat "$pkg_state/$name")" == "$want" ]]; then
		log "package $name $version: already installed"
		return 0
	fi
	local dir=/var/cache/dhctl/packages/$name
	rm -rf "$dir"
	mkdir -p "$dir"
	local files=() file sum got
	while (($#)); do
		file=$1 sum=$2
		shift 2
		log "package $name $version: fetching $file"
		fetch "/packages/$name/$file" "$dir/$file" || die "package $name $version: cannot fetch $file from dhctl's packages endpoint"
		got=$(sha256sum "$dir/$file" | cut -d' ' -f1)
		if [[ "$got" != "$sum" ]]; then
			rm -f "$dir/$file"
			die "package $name $version: checksum mismatch for $file: got sha256 $got, the version map says $sum"
		fi
		files+=("$dir/$file")
	done
	mkdir -p "$dest"
	for file in "${files[@]}"; do
		case "$file" in
		*.deb) os_install_deb "$file" ;;
		*.rpm) os_install_rpm "$file" ;;
		*.tar.gz | *.tgz) tar -xzf "$file" -C "$dest" --no-same-owner ;;
		*) install -m 0755 "$file" "$dest/$(basename "$file")" ;;
		esac
	done
	echo "$want" >"$pkg_state/$name"
	rm -rf "$dir"
	log "package $name $version: installed"
}
{{ range .Packages }}
install_package {{ quote .Name }} {{ quote .Version }} {{ quote .Dest }}{{ range .Files }} {{ quote .Name }} {{ quote .SHA256 }}{{ end }}
{{- end }}
