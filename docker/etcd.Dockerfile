# tether-etcd:dev — Debian's etcd (etcd-server) with the libraries it links, FROM scratch; built by
# docker/build-image.sh. For Tether's shared store (--store etcd://etcd:2379/tether); the recipe
# with its flags and volume is in docs/swarm.md.
FROM scratch
COPY root/ /
VOLUME /var/lib/etcd
EXPOSE 2379 2380
ENV ETCD_DATA_DIR=/var/lib/etcd \
    ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379 \
    ETCD_ADVERTISE_CLIENT_URLS=http://etcd:2379
ENTRYPOINT ["/usr/bin/etcd"]
