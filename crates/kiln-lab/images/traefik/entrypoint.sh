#!/bin/sh
# kiln lab Traefik image entrypoint, following the upstream image's contract: when the first
# argument is an option (`--configFile=...`, `--entryPoints.web.address=:80`) or one of
# traefik's own subcommands, the arguments are traefik's and `traefik` goes in front of them;
# anything else (`traefik ...`, `sh -c ...`) runs as given.
set -e

case "${1-}" in
	-*|version|healthcheck)
		set -- traefik "$@"
		;;
esac

exec "$@"
