# syntax=docker/dockerfile:1
# Two images from one build:
#   docker build --target controller  -t ghcr.io/pod-network-controller/controller:<version> .
#   docker build --target init-waiter -t ghcr.io/pod-network-controller/init-waiter:<version> .
# Each runtime image holds only its single-file bundle (no node_modules).

ARG NODE_IMAGE=node:24-slim
ARG WAITER_BASE_IMAGE=gcr.io/distroless/nodejs24-debian12:nonroot

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY hack/build.ts hack/build.ts
COPY hack/lib/bundle-options.ts hack/lib/bundle-options.ts
COPY controller/src controller/src
COPY init-waiter/src init-waiter/src
RUN node hack/build.ts

# The node agent: runs as root with a few capabilities (see manifests/base/daemonset.yaml).
# iptables ships both back ends (iptables-legacy-restore and iptables-nft-restore): the
# agent uses whichever the node's pods already use. util-linux provides nsenter; iproute2
# the `ip` that puts ::6/128 on a pod's lo for IPv6 inbound passthrough.
FROM ${NODE_IMAGE} AS controller
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables util-linux iproute2 \
 && rm -rf /var/lib/apt/lists/* \
 # Nothing here installs packages at run time: drop npm, npx, corepack and yarn.
 && rm -rf /usr/local/lib/node_modules /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack /opt/yarn-*
WORKDIR /app
COPY --from=build /src/dist/controller.js /src/dist/package.json /app/
ENTRYPOINT ["node", "/app/controller.js"]
CMD ["run"]

# The init container: distroless Node, non-root (UID 65532), no shell.
FROM ${WAITER_BASE_IMAGE} AS init-waiter
WORKDIR /app
COPY --from=build /src/dist/init-waiter.js /src/dist/package.json /app/
# The waiter is the entrypoint, so a pod's `args` are the waiter's flags (Istio's template
# passes --validate=false; with the script in CMD, args would replace it and go to node).
ENTRYPOINT ["/nodejs/bin/node", "/app/init-waiter.js"]
