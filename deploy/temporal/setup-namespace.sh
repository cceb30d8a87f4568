#!/bin/sh
# One-shot (admin-tools image, or any machine with the `temporal` CLI): make sure the payouts
# namespace exists with its retention; an existing namespace keeps its data and gets the retention.
# TEMPORAL_ADDRESS (and the CLI's TLS variables) say where; PAYOUTS_NAMESPACE and
# PAYOUTS_NAMESPACE_RETENTION what (docs/deploy.md, "Retention").
set -eu
NAMESPACE=${PAYOUTS_NAMESPACE:?PAYOUTS_NAMESPACE is required}
RETENTION=${PAYOUTS_NAMESPACE_RETENTION:?PAYOUTS_NAMESPACE_RETENTION is required}
ATTEMPTS=${TEMPORAL_WAIT_ATTEMPTS:-60}

attempt=1
until temporal operator cluster health >/dev/null 2>&1; do
  if [ "$attempt" -ge "$ATTEMPTS" ]; then echo "Temporal at ${TEMPORAL_ADDRESS:-?} did not become healthy" >&2; exit 1; fi
  echo "waiting for Temporal at ${TEMPORAL_ADDRESS:-?} ($attempt/$ATTEMPTS)"
  attempt=$((attempt + 1))
  sleep 5
done

if temporal operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1; then
  # A namespace created moments ago may not have reached every frontend's cache yet: retry a while.
  attempt=1
  until temporal operator namespace update --namespace "$NAMESPACE" --retention "$RETENTION"; do
    if [ "$attempt" -ge 15 ]; then exit 1; fi
    attempt=$((attempt + 1))
    sleep 2
  done
  echo "namespace $NAMESPACE: retention $RETENTION"
else
  temporal operator namespace create --namespace "$NAMESPACE" --retention "$RETENTION" \
    --description "Receipt payouts (docs/deploy.md)"
  echo "namespace $NAMESPACE: created, retention $RETENTION"
fi
