# Login shells on hardlab's test node (`docker exec -it NODE bash -l`): the admin kubeconfig, as on
# a kind node, and kubectl completion.
export KUBECONFIG=${KUBECONFIG:-/etc/kubernetes/admin.conf}
export EDITOR=${EDITOR:-vim}
if [ -n "${BASH_VERSION:-}" ] && command -v kubectl >/dev/null; then
  # shellcheck disable=SC1090
  source <(kubectl completion bash 2>/dev/null)
  alias k=kubectl
  complete -o default -F __start_kubectl k
fi
PS1='root@\h:\w\$ '
