# hookscope's image: the agent's static binary on an empty base, as
# /hookscope (`hookscope agent`; the CLI's triage commands are in the
# hookscope binary operators run). There is no image registry where
# hookscope is built and tested, so the binary is built by `make build`
# (CGO_ENABLED=0) and copied in; `docker build .` needs no pull.
#   make build && docker build -t hookscope:dev .
# BINARY picks the build: bin/hookscope-agent (this machine's architecture)
# or bin/hookscope-agent-arm64 for Graviton (make image builds both, with
# --platform; nothing in the image runs at build time, so no emulation).
FROM scratch
ARG BINARY=bin/hookscope-agent
COPY ${BINARY} /hookscope
# The agent runs as root in its pod with every capability dropped but the
# three that deploy/base and the Helm chart (deploy/chart/hookscope) add back,
# on a read-only root filesystem; the CLI needs none.
ENTRYPOINT ["/hookscope"]
CMD ["agent"]
