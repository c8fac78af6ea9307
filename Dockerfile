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
# Port 5353 needs no capability; the Service maps port 53 to it.
USER 65532:65532
EXPOSE 5353/udp 5353/tcp 9153/tcp
ENTRYPOINT ["kubedns"]
CMD ["serve", "--listen", "0.0.0.0:5353", "--ops-listen", "0.0.0.0:9153"]
