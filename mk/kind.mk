# kind provider: a Docker daemon and an offline kind node image (tools/kind).
# Included from the Makefile; nothing here runs unless asked for by name.

KIND_NODE_IMAGE ?= hookscope.local/kind-node:v1.34.4

.PHONY: docker-up docker-down kind-image kind-test

## docker-up: install (Debian's docker.io) and start dockerd with the runc wrapper this machine needs
docker-up:
	bash tools/kind/docker.sh up

## docker-down: stop the dockerd that docker-up started
docker-down:
	bash tools/kind/docker.sh down

## kind-image: the kind node image $(KIND_NODE_IMAGE), built offline and cached
kind-image: docker-up
	KIND_NODE_IMAGE=$(KIND_NODE_IMAGE) bash tools/kind/build-node-image.sh

## kind-test: a real kind cluster from that image, with aws-node as its CNI (chaos.TestKindCluster)
kind-test: kind-image
	HOOKSCOPE_KIND_IMAGE=$(KIND_NODE_IMAGE) go test -count=1 -run '^TestKind' -v ./chaos/
