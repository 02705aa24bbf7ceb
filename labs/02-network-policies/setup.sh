#!/usr/bin/env bash
# Lab 2's starting state: the three-tier shop (frontend, backend, MySQL) in namespace shop, with no
# NetworkPolicy at all. Idempotent: policies left from an earlier attempt are removed.
set -euo pipefail

# Kubernetes 1.21+ labels every namespace with its name; policies select kube-system's DNS by that
# label. Older clusters need it set once.
kubectl label namespace kube-system kubernetes.io/metadata.name=kube-system --overwrite >/dev/null

kubectl apply -f - <<'YAML'
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: Secret
metadata:
  name: db-root
  namespace: shop
stringData:
  password: shop-demo-root-password
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: frontend
  namespace: shop
spec:
  replicas: 1
  selector:
    matchLabels: {app: frontend}
  template:
    metadata:
      labels: {app: frontend}
    spec:
      containers:
        - name: web
          image: busybox:1.36
          command: ["sh", "-c", "mkdir -p /www && echo frontend > /www/index.html && exec httpd -f -p 8080 -h /www"]
          ports:
            - name: http
              containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: frontend
  namespace: shop
spec:
  selector: {app: frontend}
  ports:
    - name: http
      port: 8080
      targetPort: http
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: backend
  namespace: shop
spec:
  replicas: 1
  selector:
    matchLabels: {app: backend}
  template:
    metadata:
      labels: {app: backend}
    spec:
      containers:
        - name: api
          image: busybox:1.36
          command: ["sh", "-c", "mkdir -p /www && echo backend > /www/index.html && exec httpd -f -p 8080 -h /www"]
          ports:
            - name: http
              containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: backend
  namespace: shop
spec:
  selector: {app: backend}
  ports:
    - name: http
      port: 8080
      targetPort: http
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: db
  namespace: shop
spec:
  replicas: 1
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
        - name: mysql
          image: mysql:8.4
          env:
            - name: MYSQL_ROOT_PASSWORD
              valueFrom:
                secretKeyRef: {name: db-root, key: password}
          ports:
            - name: mysql
              containerPort: 3306
---
apiVersion: v1
kind: Service
metadata:
  name: db
  namespace: shop
spec:
  selector: {app: db}
  ports:
    - name: mysql
      port: 3306
      targetPort: mysql
YAML
kubectl delete networkpolicy --all -n shop >/dev/null

# The checks judge pods; wait until each Deployment has created its pod (running or not).
deadline=$((SECONDS + 120))
for app in frontend backend db; do
  until [ -n "$(kubectl get pods -n shop -l app=$app -o name 2>/dev/null)" ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "no pod for app=$app after 120 s: is kube-controller-manager running?" >&2
      exit 1
    fi
    sleep 2
  done
done
echo "lab 2 ready: frontend, backend and db in namespace shop, no NetworkPolicy"
