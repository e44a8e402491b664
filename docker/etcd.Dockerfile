# tether-etcd:dev — Debian's etcd (etcd-server) with the libraries it links, FROM scratch; built by
# docker/build-image.sh. For Tether's shared store (--store etcd://etcd:2379/tether); the recipe
# with its flags and volume is in docs/swarm.md.
FROM scratch
COPY root/ /
VOLUME /var/lib/etcd
EXPOSE 2379 2380
ENTRYPOINT ["/usr/bin/etcd"]
# Defaults only (etcd refuses a setting given both as a flag and in its environment): a command
# replaces them all.
CMD ["--data-dir=/var/lib/etcd", "--listen-client-urls=http://0.0.0.0:2379", "--advertise-client-urls=http://etcd:2379"]
