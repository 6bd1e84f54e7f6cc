#!/usr/bin/env bash
# A real two-node Kubernetes on this one machine, for the tests: upstream kube-apiserver, etcd,
# kube-controller-manager, kube-scheduler, and per node Debian's containerd + runc + CNI bridge,
# a kubelet and a kube-proxy; a minimal CoreDNS and the JobSet controller with its webhooks.
# The programs come from scripts/k8s_build.sh (built once from Go modules, cached outside the clone).
#
#   bash scripts/k8s_cluster.sh up        # idempotent; writes .k8s/kubeconfig
#   bash scripts/k8s_cluster.sh status    # exit 0 when both nodes are Ready and JobSet answers
#   bash scripts/k8s_cluster.sh load REF  # import an image from buildah's storage into both nodes
#   bash scripts/k8s_cluster.sh down      # removes every process, namespace, mount and cgroup
#
# Shape (all names start with rlk8s; subnet 10.233.0.0/16, away from Slurm's 10.231.77.0/24):
# - netns rlk8s-ctl: bridge rlk8s-br 10.233.0.1/24; etcd (loopback), kube-apiserver :6443,
#   controller-manager, scheduler, CoreDNS :53 (cluster DNS only, no forwarder) and the JobSet
#   manager (webhook :9443, reached by the apiserver through its Service's EndpointSlice).
# - netns rlk8s-node1/2 (10.233.0.11/.12, pods 10.233.1.0/24 and 10.233.2.0/24): each its own
#   mount namespace (/ rshared there only; private /run and /var/log), containerd, kubelet, kube-proxy.
# - the host: veth rlk8s-host 10.233.0.254 into the bridge, so clients here reach the apiserver.
# No namespace has an uplink: pods never reach this machine's resolver or anything outside.
# Every process runs in the cgroup subtree /rlk8s (kubelet cgroupRoot /rlk8s/nodeN).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

DIR=${RLAUNCH_K8S_DIR:-/var/tmp/rlaunch-k8s}
KUBECONFIG_OUT=$REPO/.k8s/kubeconfig
NODES=(1 2)
CTL_NS=rlk8s-ctl
CTL_IP=10.233.0.1
HOST_IP=10.233.0.254
SUBNET=10.233.0.0/16
SERVICE_CIDR=10.233.16.0/20
CLUSTER_CIDR=10.233.0.0/20
API=https://$CTL_IP:6443
PAUSE_IMAGE=localhost/rlk8s-pause:1
CGROUP=rlk8s
# The sysctls a kubelet rewrites machine-wide (protectKernelDefaults: false): saved, restored.
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
         kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
PY=$REPO/.venv/bin/python
[ -x "$PY" ] || PY=python3

node_ip() { echo "10.233.0.1$1"; }
pod_cidr() { echo "10.233.$1.0/24"; }
log() { echo "k8s_cluster: $*" >&2; }
die() { echo "k8s_cluster: $*" >&2; exit 1; }

api_get() {  # path -> body on stdout; fails quietly
    curl -sf --max-time 5 --cacert "$DIR/pki/ca.crt" --cert "$DIR/pki/admin.crt" \
        --key "$DIR/pki/admin.key" "$API$1"
}

our_netns() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^rlk8s-' || true; }

# ---- teardown (by our own names only) --------------------------------------------------------

cgroup_mounts() { awk '$3=="cgroup"||$3=="cgroup2"{print $2}' /proc/mounts; }

cgroup_pids() {  # every process in our subtree, any hierarchy
    local m
    for m in $(cgroup_mounts); do
        [ -d "$m/$CGROUP" ] && find "$m/$CGROUP" -name cgroup.procs -exec cat {} + 2>/dev/null
    done | sort -u
}

kill_ours() {
    # Only by cgroup: `start` puts each daemon in /rlk8s before it execs, and a pid file could
    # name a recycled pid after a reboot.
    local sig pids
    for sig in TERM TERM KILL KILL KILL KILL; do
        pids=$(cgroup_pids)
        [ -n "$pids" ] || break
        # shellcheck disable=SC2086
        kill -"$sig" $pids 2>/dev/null || true
        sleep 1
    done
    [ -z "$(cgroup_pids)" ] || log "processes left in cgroup $CGROUP: $(cgroup_pids | tr '\n' ' ')"
    rm -f "$DIR"/pids/*.pid
}

remove_cgroups() {
    local m d
    for m in $(cgroup_mounts); do
        [ -d "$m/$CGROUP" ] || continue
        # Deepest first: rmdir removes an empty cgroup (its control files go with it).
        find "$m/$CGROUP" -depth -type d -exec rmdir {} + 2>/dev/null || true
        [ ! -d "$m/$CGROUP" ] || for d in $(find "$m/$CGROUP" -depth -type d); do rmdir "$d" 2>/dev/null || true; done
    done
}

restore_sysctls() {
    [ -f "$DIR/sysctls.saved" ] || return 0
    local name value
    while read -r name value; do
        sysctl -qw "$name=$value" >/dev/null 2>&1 || log "could not restore $name=$value"
    done < "$DIR/sysctls.saved"
    rm -f "$DIR/sysctls.saved"
}

down() {
    kill_ours
    local ns
    for ns in $(our_netns); do ip netns del "$ns" 2>/dev/null || log "could not delete netns $ns"; done
    ip link show rlk8s-host >/dev/null 2>&1 && ip link del rlk8s-host
    for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^rlk8s-' || true); do
        ip link del "$link" 2>/dev/null || true
    done
    remove_cgroups
    restore_sysctls
    # Cluster state goes; the pause image and the PKI's CA stay for the next start.
    rm -rf "$DIR/etcd" "$DIR"/node[0-9]* "$DIR/ctl" "$DIR/log.old"
    [ -d "$DIR/log" ] && mv "$DIR/log" "$DIR/log.old"
    rm -f "$KUBECONFIG_OUT"
    return 0
}

# ---- checks ----------------------------------------------------------------------------------

need() {
    local missing=() c
    for c in "$@"; do command -v "$c" >/dev/null || missing+=("$c"); done
    ((${#missing[@]} == 0)) || die "missing programs: ${missing[*]} (bash scripts/setup.sh installs them)"
}

check_machine() {
    [ "$(id -u)" = 0 ] || die "needs root (network namespaces, cgroups, containerd)"
    need ip nsenter unshare setsid curl openssl containerd containerd-shim-runc-v2 runc ctr \
        umoci iptables-restore conntrack sysctl
    [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] \
        || die "missing CNI plugins in /usr/lib/cni (package containernetworking-plugins)"
    [ -x /bin/busybox ] && file_is_static /bin/busybox \
        || die "missing a static /bin/busybox for the pause image (package busybox-static)"
    # Our addresses must not collide with anything the host routes already.
    local clash
    clash=$(ip -4 route show | grep -E '(^|[[:space:]])10\.233\.' | grep -v 'rlk8s-' | paste -sd';' - || true)
    [ -z "$clash" ] || die "the host already routes $SUBNET ($clash): the cluster's subnet is taken"
}

file_is_static() { ! LC_ALL=C ldd "$1" >/dev/null 2>&1; }

healthy() {
    [ -n "$(our_netns)" ] || return 1
    [ -s "$KUBECONFIG_OUT" ] || return 1
    api_get /readyz >/dev/null 2>&1 || return 1
    local ready
    ready=$(api_get /api/v1/nodes | "$PY" -c 'import json,sys
items=json.load(sys.stdin)["items"]
print(sum(1 for n in items for c in n["status"].get("conditions",[]) if c["type"]=="Ready" and c["status"]=="True"))' 2>/dev/null) || return 1
    [ "$ready" = "${#NODES[@]}" ] || return 1
    ip netns exec "$CTL_NS" curl -sf --max-time 3 http://127.0.0.1:8081/readyz >/dev/null 2>&1
}

# ---- pieces ----------------------------------------------------------------------------------

save_sysctls() {
    [ -f "$DIR/sysctls.saved" ] && return 0
    local name
    for name in "${SYSCTLS[@]}"; do echo "$name $(sysctl -n "$name")"; done > "$DIR/sysctls.saved.tmp"
    mv "$DIR/sysctls.saved.tmp" "$DIR/sysctls.saved"
}

make_cert() {  # name CN O [SANs] : a key and a certificate signed by our CA
    local name=$1 cn=$2 org=$3 sans=${4:-}
    local ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth"
    [ -z "$sans" ] || ext+=$'\n'"subjectAltName=$sans"
    openssl req -new -newkey rsa:2048 -nodes -keyout "$DIR/pki/$name.key" -out "$DIR/pki/$name.csr" \
        -subj "/CN=$cn${org:+/O=$org}" 2>/dev/null
    openssl x509 -req -in "$DIR/pki/$name.csr" -CA "$DIR/pki/ca.crt" -CAkey "$DIR/pki/ca.key" \
        -CAcreateserial -days 30 -out "$DIR/pki/$name.crt" -extfile <(echo "$ext") 2>/dev/null
    rm -f "$DIR/pki/$name.csr"
}

make_pki() {
    mkdir -p "$DIR/pki"; chmod 700 "$DIR/pki"
    if [ ! -s "$DIR/pki/ca.crt" ] || ! openssl x509 -checkend 86400 -noout -in "$DIR/pki/ca.crt" >/dev/null; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 365 -keyout "$DIR/pki/ca.key" \
            -out "$DIR/pki/ca.crt" -subj "/CN=rlk8s-ca" 2>/dev/null
        rm -f "$DIR/pki/sa.key"
    fi
    [ -s "$DIR/pki/sa.key" ] || { openssl genrsa -out "$DIR/pki/sa.key" 2048 2>/dev/null
        openssl rsa -in "$DIR/pki/sa.key" -pubout -out "$DIR/pki/sa.pub" 2>/dev/null; }
    make_cert apiserver kube-apiserver "" \
        "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:$CTL_IP,IP:10.233.16.1,IP:127.0.0.1"
    make_cert admin rlk8s-admin system:masters
    local n
    for n in "${NODES[@]}"; do
        make_cert "kubelet-node$n" "system:node:rlk8s-node$n" system:nodes "DNS:rlk8s-node$n,IP:$(node_ip "$n")"
    done
}

kubeconfig() {  # out cert-name
    cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: rlk8s
  cluster: {server: "$API", certificate-authority: "$DIR/pki/ca.crt"}
users:
- name: $2
  user: {client-certificate: "$DIR/pki/$2.crt", client-key: "$DIR/pki/$2.key"}
contexts:
- name: rlk8s
  context: {cluster: rlk8s, user: $2}
current-context: rlk8s
EOF
}

make_network() {
    ip netns add "$CTL_NS"
    ip -n "$CTL_NS" link set lo up
    ip -n "$CTL_NS" link add rlk8s-br type bridge
    ip -n "$CTL_NS" addr add "$CTL_IP/24" dev rlk8s-br
    ip -n "$CTL_NS" link set rlk8s-br up
    ip link add rlk8s-host type veth peer name rlk8s-h
    ip link set rlk8s-h netns "$CTL_NS"
    ip -n "$CTL_NS" link set rlk8s-h master rlk8s-br up
    ip addr add "$HOST_IP/24" dev rlk8s-host
    ip link set rlk8s-host up
    local n m
    for n in "${NODES[@]}"; do
        ip netns add "rlk8s-node$n"
        ip -n "rlk8s-node$n" link set lo up
        ip link add "rlk8s-n$n" type veth peer name "rlk8s-n${n}p"
        ip link set "rlk8s-n$n" netns "$CTL_NS"
        ip -n "$CTL_NS" link set "rlk8s-n$n" master rlk8s-br up
        ip link set "rlk8s-n${n}p" netns "rlk8s-node$n"
        ip -n "rlk8s-node$n" link set "rlk8s-n${n}p" name eth0
        ip -n "rlk8s-node$n" addr add "$(node_ip "$n")/24" dev eth0
        ip -n "rlk8s-node$n" link set eth0 up
        # Service addresses need a route before kube-proxy's DNAT; the control netns has no uplink.
        ip -n "rlk8s-node$n" route add default via "$CTL_IP"
        ip netns exec "rlk8s-node$n" sysctl -qw net.ipv4.ip_forward=1
        ip -n "$CTL_NS" route add "$(pod_cidr "$n")" via "$(node_ip "$n")"
        for m in "${NODES[@]}"; do
            [ "$m" = "$n" ] || ip -n "rlk8s-node$n" route add "$(pod_cidr "$m")" via "$(node_ip "$m")"
        done
    done
}

cgroup_make() {  # relative path under /rlk8s, in every hierarchy
    local m d
    for m in $(cgroup_mounts); do
        d=$m/$CGROUP/$1
        mkdir -p "$d"
        if [ -f "$m/cpuset.cpus" ]; then  # cgroup v1 cpuset: a new group starts with no CPUs
            local p=$m cur=""
            for part in $CGROUP ${1//\// }; do
                cur=$cur/$part
                [ -n "$(cat "$m$cur/cpuset.cpus")" ] || cat "$p/cpuset.cpus" > "$m$cur/cpuset.cpus"
                [ -n "$(cat "$m$cur/cpuset.mems")" ] || cat "$p/cpuset.mems" > "$m$cur/cpuset.mems"
                p=$m$cur
            done
        fi
    done
}

start() {  # name cgroup netns-or-pid command... : a daemon in our cgroup and the given namespaces
    local name=$1 group=$2 where=$3; shift 3
    local enter
    case $where in
        pid:*) enter=(nsenter -t "${where#pid:}" -m -n --) ;;
        # The host's /sys (cgroup mounts included): `ip netns exec` would mount a fresh sysfs.
        net:*) enter=(nsenter "--net=/run/netns/${where#net:}" --) ;;
        *) enter=(ip netns exec "$where") ;;
    esac
    (
        for m in $(cgroup_mounts); do echo "$BASHPID" > "$m/$CGROUP/$group/cgroup.procs"; done
        exec "${enter[@]}" setsid "$@" </dev/null >>"$DIR/log/$name.log" 2>&1
    ) &
    echo $! > "$DIR/pids/$name.pid"
}

wait_for() {  # what seconds command...
    local what=$1 seconds=$2; shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$what did not come up within ${seconds}s (logs: $DIR/log)"
        sleep 1
    done
}

start_control_plane() {
    cgroup_make control
    mkdir -p "$DIR/etcd" "$DIR/ctl"
    start etcd control "$CTL_NS" "$BIN/etcd" --name rlk8s --data-dir "$DIR/etcd" \
        --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
        --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster rlk8s=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
        --quota-backend-bytes 1073741824
    wait_for etcd 60 ip netns exec "$CTL_NS" curl -sf http://127.0.0.1:2381/readyz
    start kube-apiserver control "$CTL_NS" "$BIN/kube-apiserver" \
        --etcd-servers http://127.0.0.1:2379 --bind-address "$CTL_IP" --advertise-address "$CTL_IP" \
        --secure-port 6443 --service-cluster-ip-range "$SERVICE_CIDR" \
        --client-ca-file "$DIR/pki/ca.crt" --tls-cert-file "$DIR/pki/apiserver.crt" \
        --tls-private-key-file "$DIR/pki/apiserver.key" \
        --kubelet-client-certificate "$DIR/pki/admin.crt" --kubelet-client-key "$DIR/pki/admin.key" \
        --kubelet-certificate-authority "$DIR/pki/ca.crt" --kubelet-preferred-address-types InternalIP \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-account-key-file "$DIR/pki/sa.pub" --service-account-signing-key-file "$DIR/pki/sa.key" \
        --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
        --allow-privileged=true --enable-aggregator-routing=true --profiling=false
    wait_for kube-apiserver 180 api_get /readyz
    kubeconfig "$DIR/ctl/admin.kubeconfig" admin
    start kube-controller-manager control "$CTL_NS" "$BIN/kube-controller-manager" \
        --kubeconfig "$DIR/ctl/admin.kubeconfig" --authentication-kubeconfig "$DIR/ctl/admin.kubeconfig" \
        --authorization-kubeconfig "$DIR/ctl/admin.kubeconfig" --bind-address 127.0.0.1 \
        --leader-elect=false --use-service-account-credentials=true \
        --cluster-signing-cert-file "$DIR/pki/ca.crt" --cluster-signing-key-file "$DIR/pki/ca.key" \
        --root-ca-file "$DIR/pki/ca.crt" --service-account-private-key-file "$DIR/pki/sa.key" \
        --service-cluster-ip-range "$SERVICE_CIDR" --cluster-cidr "$CLUSTER_CIDR"
    start kube-scheduler control "$CTL_NS" "$BIN/kube-scheduler" \
        --kubeconfig "$DIR/ctl/admin.kubeconfig" --authentication-kubeconfig "$DIR/ctl/admin.kubeconfig" \
        --authorization-kubeconfig "$DIR/ctl/admin.kubeconfig" --bind-address 127.0.0.1 --leader-elect=false
    cat > "$DIR/ctl/Corefile" <<EOF
.:53 {
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $DIR/ctl/admin.kubeconfig
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
    loadbalance
}
EOF
    start coredns control "$CTL_NS" "$BIN/coredns" -conf "$DIR/ctl/Corefile"
}

start_jobset() {
    "$PY" scripts/k8s_cluster_api.py --kubeconfig "$DIR/ctl/admin.kubeconfig" jobset-objects \
        "$CRDS/jobset.yaml" "$CRDS/jobset-webhook" "$CTL_IP" || die "could not create JobSet's objects"
    # The manager reads its webhook certificates from a fixed /tmp path, where a pod has its
    # Secret mounted: a private /tmp here, and the Secret kept there as files.
    start jobset-manager control "$CTL_NS" unshare -m --propagation private sh -c '
        mount -t tmpfs -o size=16m tmpfs /tmp || exit 1
        "$1" "$2" --kubeconfig "$3" sync-secret jobset-system jobset-webhook-server-cert \
            /tmp/k8s-webhook-server/serving-certs &
        exec "$4" --kubeconfig "$3" --leader-elect=false --metrics-bind-address 0 \
            --health-probe-bind-address 127.0.0.1:8081 --zap-log-level info' \
        jobset-manager "$PY" "$REPO/scripts/k8s_cluster_api.py" "$DIR/ctl/admin.kubeconfig" \
        "$BIN/jobset-manager"
}

pause_image() {  # an OCI archive of busybox-static: the sandbox image and a tiny tool image
    local tar=$DIR/images/pause.tar
    [ -s "$tar" ] && { echo "$tar"; return; }
    mkdir -p "$DIR/images"
    local work; work=$(mktemp -d "$DIR/images/build.XXXX")
    (
        cd "$work"
        umoci init --layout layout
        umoci new --image layout:1
        umoci unpack --rootless --image layout:1 bundle
        mkdir -p bundle/rootfs/bin
        cp /bin/busybox bundle/rootfs/bin/busybox
        for tool in sh sleep cat ls tar gzip base64 wc find sed echo mkdir id; do
            ln -s busybox "bundle/rootfs/bin/$tool"
        done
        umoci repack --image layout:1 bundle
        umoci config --image layout:1 --config.entrypoint /bin/busybox --config.cmd sleep \
            --config.cmd 2147483647
        tar -C layout -cf "$tar.tmp" .
    ) >/dev/null || die "could not build the pause image with umoci"
    mv "$tar.tmp" "$tar"; rm -rf "$work"
    echo "$tar"
}

node_ctr() {  # n ctr-args... : ctr against node n's containerd
    local n=$1; shift
    nsenter -t "$(cat "$DIR/pids/holder-node$n.pid")" -m -n -- \
        ctr --address /run/rlk8s/containerd.sock -n k8s.io "$@"
}

start_node() {
    local n=$1 nd=$DIR/node$1 ns=rlk8s-node$1
    mkdir -p "$nd/containerd" "$nd/cni" "$nd/ipam" "$nd/varlog" "$nd/kubelet"
    cgroup_make "node$n"; cgroup_make "node$n-system"
    cat > "$nd/cni/10-rlk8s.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "rlk8s", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$nd/ipam", "ranges": [[{"subnet": "$(pod_cidr "$n")"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
    cat > "$nd/containerd.toml" <<EOF
version = 2
root = "$nd/containerd"
state = "/run/rlk8s/containerd-state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "/run/rlk8s/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true   # no CAP_SYS_RESOURCE here: sandboxes ask for -998
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$nd/cni"
[plugins."io.containerd.internal.v1.opt"]
  path = "$nd/containerd/opt"
EOF
    # The node's mount namespace: / rshared inside only, its own /run and /var/log.
    start "holder-node$n" "node$n-system" "net:$ns" unshare -m --propagation unchanged sh -c \
        'mount --make-rshared / && mount -t tmpfs -o mode=755 tmpfs /run && mkdir -p /run/rlk8s &&
         mount --bind "$1" /var/log && exec sleep 2147483647' holder "$nd/varlog"
    local holder
    wait_for "node$n's namespaces" 20 test -d "/proc/$(cat "$DIR/pids/holder-node$n.pid")"
    holder=$(cat "$DIR/pids/holder-node$n.pid")
    wait_for "node$n's mounts" 20 nsenter -t "$holder" -m -- test -d /run/rlk8s
    start "containerd-node$n" "node$n-system" "pid:$holder" containerd --config "$nd/containerd.toml"
    wait_for "containerd on node$n" 60 node_ctr "$n" version
    node_ctr "$n" images import --base-name localhost/rlk8s-pause "$(pause_image)" >/dev/null \
        || die "could not import the pause image into node$n"
    kubeconfig "$nd/kubelet.kubeconfig" "kubelet-node$n"
    cat > "$nd/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupRoot: /$CGROUP/node$n
containerRuntimeEndpoint: unix:///run/rlk8s/containerd.sock
oomScoreAdj: 0
failSwapOn: false
imageGCHighThresholdPercent: 100
evictionHard: {memory.available: "100Mi", nodefs.available: "0%", nodefs.inodesFree: "0%", imagefs.available: "0%"}
resolvConf: ""
clusterDNS: ["$CTL_IP"]
clusterDomain: cluster.local
address: "$(node_ip "$n")"
healthzBindAddress: 127.0.0.1
authentication: {anonymous: {enabled: false}, webhook: {enabled: false}, x509: {clientCAFile: "$DIR/pki/ca.crt"}}
authorization: {mode: AlwaysAllow}
tlsCertFile: "$DIR/pki/kubelet-node$n.crt"
tlsPrivateKeyFile: "$DIR/pki/kubelet-node$n.key"
serializeImagePulls: false
volumePluginDir: "$nd/volume-plugins"
EOF
    start "kubelet-node$n" "node$n-system" "pid:$holder" "$BIN/kubelet" --config "$nd/kubelet.yaml" \
        --kubeconfig "$nd/kubelet.kubeconfig" --hostname-override "rlk8s-node$n" \
        --node-ip "$(node_ip "$n")" --root-dir "$nd/kubelet" --v 1
    kubeconfig "$nd/proxy.kubeconfig" admin
    cat > "$nd/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$nd/proxy.kubeconfig"}
hostnameOverride: rlk8s-node$n
mode: iptables
clusterCIDR: "$CLUSTER_CIDR"
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
    start "kube-proxy-node$n" "node$n-system" "pid:$holder" "$BIN/kube-proxy" --config "$nd/kube-proxy.yaml"
}

up() {
    check_machine
    if healthy; then
        log "already up ($API)"; echo "$KUBECONFIG_OUT"; return 0
    fi
    local left; left=$(our_netns | tr '\n' ' ')
    [ -z "$left" ] || die "leftover network namespaces from an earlier run: ${left% } (run: bash scripts/k8s_cluster.sh down)"
    [ -z "$(cgroup_pids)" ] || die "leftover processes in cgroup /$CGROUP from an earlier run (run: bash scripts/k8s_cluster.sh down)"
    local out
    out=$(bash scripts/k8s_build.sh) || exit 1
    BIN=$(echo "$out" | tail -n 1)/bin; CRDS=$(dirname "$BIN")/crds
    local t0=$SECONDS
    trap 'status=$?; trap - EXIT; if [ $status -ne 0 ]; then log "bringing down what was started"; down; fi; exit $status' EXIT
    mkdir -p "$DIR/pids" "$DIR/log" "$(dirname "$KUBECONFIG_OUT")"
    save_sysctls
    make_pki
    make_network
    start_control_plane
    start_jobset
    local n
    for n in "${NODES[@]}"; do start_node "$n"; done
    "$PY" scripts/k8s_cluster_api.py --kubeconfig "$DIR/ctl/admin.kubeconfig" nodes-ready \
        --nodes "${#NODES[@]}" --timeout 180 || die "the nodes did not become Ready (logs: $DIR/log)"
    wait_for "the JobSet manager" 120 ip netns exec "$CTL_NS" curl -sf http://127.0.0.1:8081/readyz
    wait_for CoreDNS 60 ip netns exec "$CTL_NS" curl -sf http://127.0.0.1:8181/ready
    kubeconfig "$KUBECONFIG_OUT.tmp" admin && mv "$KUBECONFIG_OUT.tmp" "$KUBECONFIG_OUT"
    trap - EXIT
    log "up in $((SECONDS - t0))s: $API, kubeconfig $KUBECONFIG_OUT"
    echo "$KUBECONFIG_OUT"
}

load_image() {  # REF from buildah's storage -> both nodes' containerd, as REF
    local ref=$1
    [[ $ref =~ ^[A-Za-z0-9][A-Za-z0-9._/:@-]*$ ]] || die "not an image reference: '$ref'"
    healthy || die "the cluster is not up (run: bash scripts/k8s_cluster.sh up)"
    local name=${ref%:*} tag=${ref##*:}
    [ "$name" != "$ref" ] || die "image '$ref' has no tag: pods of a local image need an exact tag"
    local n missing=()
    for n in "${NODES[@]}"; do
        node_ctr "$n" images ls -q 2>/dev/null | grep -qxF "$ref" || missing+=("$n")
    done
    if ((${#missing[@]} == 0)); then log "$ref is already on every node"; return 0; fi
    mkdir -p "$DIR/images"
    local tar=$DIR/images/load.tar
    rm -f "$tar"
    buildah push --quiet --disable-compression "$ref" "oci-archive:$tar:$tag" >/dev/null 2>"$DIR/images/load.err" \
        || die "buildah cannot push '$ref': $(tail -n 1 "$DIR/images/load.err")"
    for n in "${missing[@]}"; do
        node_ctr "$n" images import --base-name "$name" "$tar" >/dev/null 2>"$DIR/images/load.err" \
            || die "could not import '$ref' into node$n: $(tail -n 1 "$DIR/images/load.err")"
    done
    rm -f "$tar"
    log "loaded $ref into ${#NODES[@]} nodes"
}

case "${1:-}" in
    up) up ;;
    down) down; log "down" ;;
    status) if healthy; then echo "up: $API ($KUBECONFIG_OUT)"; else echo "down"; exit 1; fi ;;
    load) [ $# -eq 2 ] || die "usage: k8s_cluster.sh load IMAGE:TAG"; load_image "$2" ;;
    *) echo "usage: bash scripts/k8s_cluster.sh up|down|status|load IMAGE:TAG" >&2; exit 2 ;;
esac
