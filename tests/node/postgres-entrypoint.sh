#!/bin/sh
# The test PostgreSQL pod's entrypoint: a cluster in the pod's emptyDir on first start, trust
# authentication from the pod network (a throwaway test database), then the server.
set -e
PGDATA=/var/lib/postgresql/data
bin=/usr/lib/postgresql/15/bin
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    "$bin/initdb" -D "$PGDATA" -U postgres --auth=trust --encoding=UTF8 --locale=C --no-sync >/dev/null
    echo "host all all 0.0.0.0/0 trust" >>"$PGDATA/pg_hba.conf"
fi
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' -c fsync=off \
    -c unix_socket_directories=/var/run/postgresql
