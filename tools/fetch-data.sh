#!/usr/bin/env bash
# Puts MNIST or Fashion-MNIST (the four standard .gz IDX files) into a directory, so training
# needs no manual download. Files are verified before they land under their final names.
# Exit codes: 0 done (or already there), 2 bad arguments, 3 data unobtainable (callers may fall
# back to the other data set), 1 anything else.
set -euo pipefail

readonly FILES=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz
                t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)
readonly MNIST_MIRRORS=(https://ossci-datasets.s3.amazonaws.com/mnist/
                        https://storage.googleapis.com/cvdf-datasets/mnist/)
declare -rA MNIST_SHA256=(
  [train-images-idx3-ubyte.gz]=440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609
  [train-labels-idx1-ubyte.gz]=3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c
  [t10k-images-idx3-ubyte.gz]=8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6
  [t10k-labels-idx1-ubyte.gz]=f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6
)
readonly FASHION_PACKAGE=dataset-fashion-mnist
readonly FASHION_SYSTEM_DIR=/usr/share/datasets/fashion-mnist
# S3 website endpoints serve plain HTTP only; gzip -t below is the integrity check.
readonly FASHION_MIRROR=http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/

usage() {
  echo "usage: $0 mnist|fashion-mnist DIR" >&2
  echo "  downloads (mnist) or copies (fashion-mnist) the four .gz IDX files into DIR" >&2
  exit 2
}

# The partial file of an interrupted run must not survive to be mistaken for data.
partial=""
trap 'if [[ -n $partial ]]; then rm -f -- "$partial"; fi' EXIT

sha256_of() { sha256sum -- "$1" | cut -d' ' -f1; }
has_mnist_file() { [[ -f $1 && $(sha256_of "$1") == "${MNIST_SHA256[$(basename -- "$1")]}" ]]; }
has_valid_gzip() { [[ -s $1 ]] && gzip -t -- "$1" 2>/dev/null; }

# Installs Debian packages quietly; fails (without output) when not root or apt cannot help.
apt_install() {
  [[ $(id -u) -eq 0 ]] || return 1
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}

# Fetches URL into the temp file $partial; on failure leaves the reason in $last_error.
last_error=""
download() {
  local url=$1
  if ! last_error=$(curl --fail --silent --show-error --location \
                         --connect-timeout 10 --max-time 300 -o "$partial" -- "$url" 2>&1); then
    last_error="$url: ${last_error//$'\n'/ }"
    return 1
  fi
}

ensure_curl() {
  command -v curl >/dev/null && return 0
  apt_install curl ca-certificates && command -v curl >/dev/null
}

fetch_mnist() {
  local dir=$1 name target mirror kept=0 fetched=0
  for name in "${FILES[@]}"; do
    target=$dir/$name
    if has_mnist_file "$target"; then kept=$((kept + 1)); continue; fi
    ensure_curl || { echo "fetch-data: MNIST could not be downloaded (curl is missing and could not be installed)" >&2; exit 3; }
    partial=$dir/.$name.partial.$$
    local verified=false
    for mirror in "${MNIST_MIRRORS[@]}"; do
      if download "$mirror$name"; then
        if [[ $(sha256_of "$partial") == "${MNIST_SHA256[$name]}" ]]; then
          mv -f -- "$partial" "$target"; verified=true; break
        fi
        last_error="$mirror$name: SHA-256 mismatch"
      fi
    done
    rm -f -- "$partial"; partial=""
    if ! $verified; then
      echo "fetch-data: MNIST could not be downloaded (no mirror served $name; last error: $last_error)" >&2
      exit 3
    fi
    fetched=$((fetched + 1))
  done
  if ((fetched == 0)); then
    echo "fetch-data: $dir already has MNIST (4 files, SHA-256 verified); nothing to do"
  else
    echo "fetch-data: MNIST in $dir: downloaded $fetched file(s), kept $kept already present (SHA-256 verified)"
  fi
}

fetch_fashion_mnist() {
  local dir=$1 name missing=()
  for name in "${FILES[@]}"; do has_valid_gzip "$dir/$name" || missing+=("$name"); done
  if ((${#missing[@]} == 0)); then
    echo "fetch-data: $dir already has Fashion-MNIST (4 valid .gz files); nothing to do"
    return
  fi

  if [[ ! -d $FASHION_SYSTEM_DIR ]]; then apt_install "$FASHION_PACKAGE" || true; fi
  local source="Debian package $FASHION_PACKAGE"
  for name in "${missing[@]}"; do
    [[ -f $FASHION_SYSTEM_DIR/$name ]] || { source=""; break; }
  done

  if [[ -n $source ]]; then
    # A copy, not a symlink: the data directory must stay valid if the package is removed.
    for name in "${missing[@]}"; do
      partial=$dir/.$name.partial.$$
      cp -- "$FASHION_SYSTEM_DIR/$name" "$partial"
      mv -f -- "$partial" "$dir/$name"; partial=""
    done
  else
    source="mirror $FASHION_MIRROR"
    ensure_curl || { echo "fetch-data: Fashion-MNIST could not be obtained ($FASHION_PACKAGE not installable, curl missing)" >&2; exit 3; }
    for name in "${missing[@]}"; do
      partial=$dir/.$name.partial.$$
      if ! download "$FASHION_MIRROR$name"; then
        echo "fetch-data: Fashion-MNIST could not be obtained ($FASHION_PACKAGE not installable; $last_error)" >&2
        exit 3
      fi
      if ! has_valid_gzip "$partial"; then
        echo "fetch-data: Fashion-MNIST could not be obtained ($FASHION_MIRROR$name is not valid gzip)" >&2
        exit 3
      fi
      mv -f -- "$partial" "$dir/$name"; partial=""
    done
  fi
  echo "fetch-data: Fashion-MNIST in $dir: ${#missing[@]} file(s) from $source"
}

main() {
  (($# == 2)) || usage
  local dataset=$1 dir=$2
  [[ -n $dir ]] || usage
  case $dataset in
    mnist | fashion-mnist) ;;
    *) echo "fetch-data: unknown data set '$dataset'" >&2; usage ;;
  esac
  mkdir -p -- "$dir"
  if [[ $dataset == mnist ]]; then fetch_mnist "$dir"; else fetch_fashion_mnist "$dir"; fi
}

main "$@"
