# Runtime packages (runc, containerd, crictl): first, so that containerd is configured and the
# node's images are being pulled (045_images) while the Kubernetes packages are fetched.
{{ template "install_packages" .RuntimePackages }}
