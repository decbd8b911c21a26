#!/usr/bin/env bash
# Restore a backup made by deploy/backup.sh into an empty database and media directory.
#   deploy/restore.sh DATABASE MEDIA_DIR BACKUP_DIR
# Stop the service first; afterwards `mashangyi db upgrade` brings an older backup's schema
# up to this code's, and `mashangyi doctor` checks the result.
set -euo pipefail
database=$1 media=$2 backup=$3
pg_restore --no-owner --exit-on-error --dbname "$database" "$backup/database.dump"
mkdir -p "$media"
tar -C "$media" -xzf "$backup/media.tar.gz"
echo "restored $backup"
