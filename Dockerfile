# kubedns image: the package installed into a virtualenv, run as an unprivileged user.
# Build: docker build -t kubedns .   Run: docker run -p 5353:5353/udp kubedns serve --snapshot ...
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kubedns ./kubedns
# A plain (non-editable) install into a venv: exactly what .ci/image-smoke installs and runs.
RUN python -m venv /opt/kubedns \
    && /opt/kubedns/bin/pip install --no-cache-dir --upgrade pip \
    && /opt/kubedns/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
COPY --from=build /opt/kubedns /opt/kubedns
COPY config/demo-cluster.yaml /usr/share/kubedns/demo-cluster.yaml
ENV PATH=/opt/kubedns/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# No file capabilities on the interpreter. A non-root process gets the capabilities its
# container adds only through file capabilities (CoreDNS's image runs
# `setcap cap_net_bind_service=+ep /coredns`), but setcap on Python would mark the real
# interpreter (the venv's python is a symlink to /usr/local/bin/python3.11) for every
# program of the image, run it in secure-execution mode (LD_LIBRARY_PATH and LD_PRELOAD
# ignored, process not dumpable), and make exec fail with EPERM in every container that drops
# NET_BIND_SERVICE, such as the webhook's. The Helm chart lets the pod bind 53 with the
# network-namespaced sysctl net.ipv4.ip_unprivileged_port_start=53 instead (safe since
# Kubernetes 1.22; Docker sets it to 0 in its containers). The default command below listens
# on 5353, which needs neither.
USER 65532:65532
EXPOSE 53/udp 53/tcp 5353/udp 5353/tcp 9153/tcp
ENTRYPOINT ["kubedns"]
CMD ["serve", "--listen", "0.0.0.0:5353", "--ops-listen", "0.0.0.0:9153"]
