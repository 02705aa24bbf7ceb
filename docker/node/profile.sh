# Login shells in the node (the web terminal runs `bash -l`): kubectl and etcdctl ready to use.
export KUBECONFIG=${KUBECONFIG:-/etc/kubernetes/admin.conf}
export ETCDCTL_API=3
export EDITOR=${EDITOR:-vim}
alias k=kubectl
