//! End-to-end tests against a real Swarm: the engine made a one-node manager if it is not one,
//! whoami services created by image id on an overlay network, and Tether (`tether:dev`, built by
//! `docker/build-image.sh`) running as a container on that overlay with `--swarm`, since only a
//! container on an overlay reaches its tasks. Each test sees only its own services
//! (`--docker-constraint`). Without an engine they skip loudly (and fail under `CI=true`).

mod check;
mod dfp_seed;
mod etcd_stack;
mod nodes;
mod rotation;
mod seed_update;
mod stack;
mod support;
mod tcp;
mod traefik_seed;
