{{ define "proxy" -}}
{{ if .Proxy -}}
write_file /etc/systemd/system/{{ .Unit }}.service.d/http-proxy.conf 0600 <<'DHCTL_EOF'
[Service]
{{- if .Proxy.HTTP }}
Environment={{ systemd (printf "HTTP_PROXY=%s" .Proxy.HTTP) }}
{{- end }}
{{- if .Proxy.HTTPS }}
Environment={{ systemd (printf "HTTPS_PROXY=%s" .Proxy.HTTPS) }}
{{- end }}
Environment={{ systemd (printf "NO_PROXY=%s" .Proxy.NoProxy) }}
DHCTL_EOF
{{- else -}}
rm -f /etc/systemd/system/{{ .Unit }}.service.d/http-proxy.conf
{{- end }}
{{- end }}
