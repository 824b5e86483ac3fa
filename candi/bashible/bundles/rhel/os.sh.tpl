# OS family: RHEL and its rebuilds (Rocky Linux, AlmaLinux, CentOS Stream).

# os_check: this bundle is for the host's OS.
os_check() {
	[[ -r /etc/os-release ]] || die "unsupported OS: /etc/os-release is missing; dhctl supports Debian/Ubuntu and the RHEL family (Rocky, Alma, CentOS Stream)"
	local id like
	id=$(. /etc/os-release && echo "${ID:-}")
	like=$(. /etc/os-release && echo "${ID_LIKE:-}")
	case " $id $like " in
	*" rhel "* | *" centos "* | *" rocky "* | *" almalinux "* | *" fedora "*) ;;
	*) die "unsupported OS for the RHEL-family bundle: ID=$id ID_LIKE=$like; dhctl renders the bundle for the OS it detects, so re-run dhctl against this host" ;;
	esac
	if command -v getenforce >/dev/null 2>&1 && [[ "$(getenforce)" == Enforcing ]]; then
		log "SELinux is enforcing: containerd and kubelet run with their default SELinux labels"
	fi
}

# os_install_hint PACKAGES...: the command that installs host packages.
os_install_hint() { echo "dnf install -y $*"; }

os_install_deb() { die "$(basename "$1") is a Debian package: the version map gives this RHEL-family host a package for Debian"; }
os_install_rpm() { rpm -U --replacepkgs "$1"; }
