# Kubernetes packages (CNI plugins, kubelet, kubeadm, kubectl), fetched while the images pull.
{{ template "install_packages" .KubernetesPackages }}
