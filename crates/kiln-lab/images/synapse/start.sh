#!/bin/bash
# kiln lab Synapse image entrypoint, following the upstream image's contract:
#   `generate`: write /data/<server name>.yaml config + signing key from SYNAPSE_SERVER_NAME,
#               SYNAPSE_REPORT_STATS (yes|no), owned by UID/GID (default 991);
#   otherwise:  run the homeserver with SYNAPSE_CONFIG_PATH (default /data/homeserver.yaml).
set -Eeuo pipefail

: "${SYNAPSE_CONFIG_DIR:=/data}"
: "${SYNAPSE_DATA_DIR:=/data}"
: "${SYNAPSE_CONFIG_PATH:=$SYNAPSE_CONFIG_DIR/homeserver.yaml}"
: "${UID:=991}"
: "${GID:=991}"

if ! getent group "$GID" >/dev/null; then groupadd -g "$GID" synapse; fi
if ! getent passwd "$UID" >/dev/null; then useradd -u "$UID" -g "$GID" -d "$SYNAPSE_DATA_DIR" -M -s /usr/sbin/nologin synapse; fi
as_user=(setpriv --reuid="$UID" --regid="$GID" --clear-groups)

mode="${1:-run}"
case "$mode" in
	generate)
		: "${SYNAPSE_SERVER_NAME:?SYNAPSE_SERVER_NAME must be set to generate a configuration}"
		: "${SYNAPSE_REPORT_STATS:?SYNAPSE_REPORT_STATS must be set to yes or no}"
		mkdir -p "$SYNAPSE_CONFIG_DIR" "$SYNAPSE_DATA_DIR"
		chown "$UID:$GID" "$SYNAPSE_CONFIG_DIR" "$SYNAPSE_DATA_DIR"
		"${as_user[@]}" python3 -m synapse.app.homeserver \
			--server-name "$SYNAPSE_SERVER_NAME" \
			--report-stats "$SYNAPSE_REPORT_STATS" \
			--config-path "$SYNAPSE_CONFIG_PATH" \
			--config-directory "$SYNAPSE_CONFIG_DIR" \
			--data-directory "$SYNAPSE_DATA_DIR" \
			--generate-config --open-private-ports
		# As the upstream image: log to the console (the container's log), not to a file.
		cat > "$SYNAPSE_CONFIG_DIR/$SYNAPSE_SERVER_NAME.log.config" <<-'EOF'
			version: 1
			formatters:
			  precise:
			    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(message)s'
			handlers:
			  console:
			    class: logging.StreamHandler
			    formatter: precise
			root:
			  level: INFO
			  handlers: [console]
			disable_existing_loggers: false
		EOF
		chown "$UID:$GID" "$SYNAPSE_CONFIG_DIR/$SYNAPSE_SERVER_NAME.log.config"
		;;
	run)
		exec "${as_user[@]}" python3 -m synapse.app.homeserver --config-path "$SYNAPSE_CONFIG_PATH"
		;;
	*)
		exec "$@"
		;;
esac
