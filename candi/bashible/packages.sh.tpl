{{- /* The package steps' shared part, with the step's packages as dot: every package is fetched
at once in the background, each file checked against the sha256 of the version map, and the
packages are installed in order as each arrives. An installed package is recorded with its
version and sums, so an unchanged package is not fetched again. */ -}}
{{ define "install_packages" -}}
pkg_state=/var/lib/dhctl/packages
mkdir -p "$pkg_state"

# package_installed NAME VERSION (FILE SHA256)...: whether this exact package is recorded.
package_installed() {
	local name=$1 version=$2
	shift 2
	[[ -f "$pkg_state/$name" && "$(cat "$pkg_state/$name")" == "$version $*" ]]
}

# fetch_package NAME VERSION (FILE SHA256)...: fetches and verifies the files into the package's
# cache directory, unless the package is installed already.
fetch_package() {
	local name=$1 version=$2
	shift 2
	package_installed "$name" "$version" "$@" && return 0
	local dir=/var/cache/dhctl/packages/$name file sum got
	rm -rf "$dir"
	mkdir -p "$dir"
	while (($#)); do
		file=$1 sum=$2
		shift 2
		fetch "/packages/$name/$file" "$dir/$file" || die "package $name $version: cannot fetch $file from dhctl's packages endpoint"
		got=$(sha256sum "$dir/$file" | cut -d' ' -f1)
		if [[ "$got" != "$sum" ]]; then
			rm -f "$dir/$file"
			die "package $name $version: checksum mismatch for $file: got sha256 $got, the version map says $sum"
		fi
	done
}

# install_package NAME VERSION DEST (FILE SHA256)...: installs what fetch_package verified.
install_package() {
	local name=$1 version=$2 dest=$3
	shift 3
	if package_installed "$name" "$version" "$@"; then
		log "package $name $version: already installed"
		return 0
	fi
	local want="$version $*" dir=/var/cache/dhctl/packages/$name file
	mkdir -p "$dest"
	while (($#)); do
		file=$dir/$1
		shift 2
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

# wait_fetched NAME VERSION PID: waits for the package's fetch; if it failed, stops the other
# fetches (they hold this bundle's lock) and fails the step.
wait_fetched() {
	if ! wait "$3"; then
		local pids
		mapfile -t pids < <(jobs -p)
		((${#pids[@]} == 0)) || kill "${pids[@]}" 2>/dev/null || true
		wait 2>/dev/null || true
		die "package $1 $2: not fetched (the reason is above)"
	fi
}
{{ range $i, $p := . }}
fetch_package {{ quote $p.Name }} {{ quote $p.Version }}{{ range $p.Files }} {{ quote .Name }} {{ quote .SHA256 }}{{ end }} &
fetch_{{ $i }}=$!
{{- end }}
log "fetching {{ len . }} packages at once"
{{ range $i, $p := . }}
wait_fetched {{ quote $p.Name }} {{ quote $p.Version }} "$fetch_{{ $i }}"
install_package {{ quote $p.Name }} {{ quote $p.Version }} {{ quote $p.Dest }}{{ range $p.Files }} {{ quote .Name }} {{ quote .SHA256 }}{{ end }}
{{- end }}
{{- end }}
