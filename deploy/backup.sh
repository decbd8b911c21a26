#!/usr/bin/env bash
# Back up a mashangyi deployment: the PostgreSQL database (pg_dump's custom format) and the
# media directory (residents' photos and recordings, printable notices).
#   deploy/backup.sh DATABASE MEDIA_DIR OUT_DIR
# DATABASE is a libpq URL (postgresql://user@host:5432/name), not the asyncpg one.
# The dump is consistent by itself; media files are only ever added, so a copy taken
# after the dump holds every file the dump refers to.
set -euo pipefail
database=$1 media=$2 out=$3
mkdir -p "$out"
pg_dump --format=custom --no-owner --file "$out/database.dump" "$database"
tar -C "$media" -czf "$out/media.tar.gz" .
echo "backed up to $out: $(du -sh "$out" | cut -f1)"
