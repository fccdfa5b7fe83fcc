#!/bin/sh
# Runs inside the image after configuration: tighten kernel settings.
set -eu
cat > /etc/sysctl.d/90-contoso.conf <<'CONF'
kernel.kptr_restrict = 2
net.ipv4.conf.all.rp_filter = 1
CONF
