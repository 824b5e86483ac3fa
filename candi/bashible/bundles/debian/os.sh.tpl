# OS family: Debian and Ubuntu.

# os_check: this bundle is for the host's OS.
os_check() {
	[[ -r /etc/os-release ]] || die "unsupported OS: /etc/os-release is missing; dhctl supports Debian/Ubuntu and the RHEL family (Rocky, Alma, CentOS Stream)"
	local id like
	id=$(. /etc/os-release && echo "${ID:-}")
	like=$(. /etc/os-release && echo "${ID_LIKE:-}")
	case " $id $like " in
	*" debian "* | *" ubuntu "*) ;;
	*) die "unsupported OS for the Debian bundle: ID=$id ID_LIKE=$like; dhctl renders the bundle for the OS it detects, so re-run dhctl against this host" ;;
	esac
}

# os_install_hint PACKAGES...: the command that installs host packages.
os_install_hint() { echo "apt-get install -y $*"; }

os_install_deb() { dpkg -i --force-confold "$1"; }
os_install_rpm() { die "$(basename "$1") is an RPM package: the version map gives this Debian host a package for the RHEL family"; }
