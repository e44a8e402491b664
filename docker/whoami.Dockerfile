# tether-whoami:dev — the demo backend with a HEALTHCHECK (exec form: the image has no shell).
# Built by docker/build-image.sh after tether:dev.
FROM tether:dev
HEALTHCHECK --interval=5s --timeout=2s --retries=2 CMD ["/tether", "probe", "http://127.0.0.1:8080/health"]
EXPOSE 8080
ENTRYPOINT ["/tether", "whoami"]
CMD []
