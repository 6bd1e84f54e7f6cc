#!/bin/sh
# Image entrypoint: `train|eval|export|serve ARGS...` runs `python -m resnest.<command> ARGS...`;
# `msrun ARGS...` starts data-parallel workers (msrun takes a script path: $RESNEST_DIR/train.py).
# One fixed vocabulary keeps job specs independent of where Python lives inside each image.
set -eu

usage() {
    cat <<USAGE
usage: rlaunch-entrypoint train|eval|export|serve [ARGS...]
       rlaunch-entrypoint msrun [MSRUN-ARGS...] \$RESNEST_DIR/train.py [ARGS...]
Runs python -m resnest.<command> with ARGS (try: train --help).
USAGE
}

if [ "$#" -eq 0 ]; then
    usage
    exit 0
fi

# Ascend images: CANN's environment (library paths, ASCEND_*), the way Huawei's images expect.
for cann_env in /usr/local/Ascend/ascend-toolkit/set_env.sh; do
    if [ -f "$cann_env" ]; then
        set +u
        # shellcheck disable=SC1090
        . "$cann_env"
        set -u
    fi
done

command=$1
shift
case "$command" in
    train | eval | export | serve)
        exec python -m "resnest.$command" "$@"
        ;;
    msrun)
        exec msrun "$@"
        ;;
    -h | --help | help)
        usage
        ;;
    *)
        echo "rlaunch-entrypoint: unknown command '$command' (allowed: train, eval, export, serve, msrun)" >&2
        exit 2
        ;;
esac
