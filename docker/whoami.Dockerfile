# tether-whoami:dev — the demo backend with a HEALTHCHECK (exec form: the image has no shell).
# Built by docker/build-image.sh after tether:dev.
FROM tether:dev
# The check follows --listen (whoami notes its address in $TETHER_STATE_DIR); every 2 s, so a new
# Swarm task is running (healthy) about 2 s after it starts.
HEALTHCHECK --interval=2s --timeout=2s --retries=2 CMD ["/tether", "whoami", "--healthcheck"]
EXPOSE 8080
ENTRYPOINT ["/tether", "whoami"]
CMD []
