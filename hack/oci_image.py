#!/usr/bin/env python3
"""Writes and verifies the Edgeway OCI image tarball without Docker (used by hack/build-image.sh).

  oci_image.py write  --bin-dir DIR --out FILE --ref REF [--version V] [--epoch N]
  oci_image.py write  --pause BIN | --binary BIN --out FILE --ref REF   (e2e helper images)
  oci_image.py verify FILE [--ref REF]

The image is what the top-level Dockerfile makes: one layer with /usr/local/bin/edgeway-{operator,
sidecar,platform} (0755, root-owned) and an empty /tmp (1777); no /etc/passwd (the user is the
numeric 65532:65532); ENTRYPOINT /usr/local/bin/edgeway-sidecar; PATH=/usr/local/bin.

The tarball is an OCI image layout (oci-layout, index.json, blobs/sha256/...) with the
`org.opencontainers.image.ref.name` and `io.containerd.image.name` annotations, so
`ctr images import` names it, plus a Docker `manifest.json`, so `docker load` takes it too.
Everything is deterministic: sorted entries, fixed mtimes (--epoch, default SOURCE_DATE_EPOCH or
0), uid/gid 0, gzip without a timestamp.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

BINARIES = ["edgeway-operator", "edgeway-platform", "edgeway-sidecar"]
ENTRYPOINT = ["/usr/local/bin/edgeway-sidecar"]
USER = "65532:65532"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def tar_dir(tf: tarfile.TarFile, name: str, mode: int, epoch: int) -> None:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mode = mode
    ti.mtime = epoch
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    tf.addfile(ti)


def tar_file(tf: tarfile.TarFile, name: str, data: bytes, mode: int, epoch: int) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = mode
    ti.mtime = epoch
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    tf.addfile(ti, io.BytesIO(data))


def make_layer(bin_dir: str, epoch: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tar_dir(tf, "tmp/", 0o1777, epoch)
        tar_dir(tf, "usr/", 0o755, epoch)
        tar_dir(tf, "usr/local/", 0o755, epoch)
        tar_dir(tf, "usr/local/bin/", 0o755, epoch)
        for b in BINARIES:
            with open(os.path.join(bin_dir, b), "rb") as f:
                tar_file(tf, "usr/local/bin/" + b, f.read(), 0o755, epoch)
    return buf.getvalue()


def make_pause_layer(pause: str, epoch: int) -> bytes:
    """The local cluster's sandbox image: one static binary, /pause (e2e/cluster/node/pause.c)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        with open(pause, "rb") as f:
            tar_file(tf, "pause", f.read(), 0o755, epoch)
    return buf.getvalue()


def shared_libraries(binary: str) -> list:
    """The files `ldd` says `binary` loads (the dynamic loader included), symlinks resolved."""
    out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            libs.append(path)
    return libs


def make_binary_layer(binary: str, epoch: int) -> bytes:
    """A Debian binary and the shared libraries it loads, at their paths (the e2e's Mosquitto)."""
    buf = io.BytesIO()
    files = [binary] + shared_libraries(binary)
    dirs = sorted({d for f in files for d in parent_dirs(f.lstrip("/"))})
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tar_dir(tf, "tmp/", 0o1777, epoch)
        for d in dirs:
            tar_dir(tf, d + "/", 0o755, epoch)
        for f in sorted(set(files)):
            with open(os.path.realpath(f), "rb") as fh:
                tar_file(tf, f.lstrip("/"), fh.read(), 0o755, epoch)
    return buf.getvalue()


def parent_dirs(path: str) -> list:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def write(args) -> None:
    epoch = args.epoch
    if args.pause:
        layer_tar = make_pause_layer(args.pause, epoch)
        user, entrypoint, title = "65535:65535", ["/pause"], "edgeway-e2e-pause"
        description = "Pod sandbox process for Edgeway's local e2e cluster"
    elif args.binary:
        layer_tar = make_binary_layer(args.binary, epoch)
        user, entrypoint = "65532:65532", [args.binary]
        title = "edgeway-e2e-" + os.path.basename(args.binary)
        description = f"{args.binary} from this machine's Debian package, for Edgeway's e2e"
    else:
        layer_tar = make_layer(args.bin_dir, epoch)
        user, entrypoint, title = USER, ENTRYPOINT, "edgeway"
        description = "Edgeway: edgeway-sidecar (entrypoint), edgeway-operator, edgeway-platform"
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=6) as g:
        g.write(layer_tar)
    layer = gz.getvalue()
    created = "1970-01-01T00:00:00Z" if epoch == 0 else \
        __import__("datetime").datetime.utcfromtimestamp(epoch).strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = {
        "org.opencontainers.image.title": title,
        "org.opencontainers.image.description": description,
        "org.opencontainers.image.version": args.version,
        "org.opencontainers.image.licenses": "Apache-2.0",
    }
    config = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": user,
            "Entrypoint": entrypoint,
            "Env": ["PATH=/usr/local/bin"],
            "WorkingDir": "/",
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer_tar)]},
        "history": [{"created": created, "created_by": "hack/build-image.sh"}],
    }
    config_b = canonical(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": sha256(config_b), "size": len(config_b)},
        "layers": [{"mediaType": MT_LAYER, "digest": sha256(layer), "size": len(layer)}],
        "annotations": {"org.opencontainers.image.version": args.version},
    }
    manifest_b = canonical(manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [{
            "mediaType": MT_MANIFEST,
            "digest": sha256(manifest_b),
            "size": len(manifest_b),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {
                "org.opencontainers.image.ref.name": args.ref,
                "io.containerd.image.name": args.ref,
            },
        }],
    }
    index_b = json.dumps(index, indent=2).encode() + b"\n"
    # Docker's `docker load` reads manifest.json; RepoTags wants the familiar form.
    short = args.ref[len("docker.io/"):] if args.ref.startswith("docker.io/") else args.ref
    docker_manifest = [{
        "Config": "blobs/sha256/" + sha256(config_b)[7:],
        "RepoTags": [short],
        "Layers": ["blobs/sha256/" + sha256(layer)[7:]],
    }]
    entries = [
        ("blobs/", None),
        ("blobs/sha256/", None),
        ("blobs/sha256/" + sha256(config_b)[7:], config_b),
        ("blobs/sha256/" + sha256(layer)[7:], layer),
        ("blobs/sha256/" + sha256(manifest_b)[7:], manifest_b),
        ("index.json", index_b),
        ("manifest.json", json.dumps(docker_manifest).encode() + b"\n"),
        ("oci-layout", canonical({"imageLayoutVersion": "1.0.0"})),
    ]
    tmp = args.out + ".partial"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in entries:
            if data is None:
                tar_dir(tf, name, 0o755, epoch)
            else:
                tar_file(tf, name, data, 0o644, epoch)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {args.ref}, manifest {sha256(manifest_b)}, "
          f"layer {len(layer) / 1e6:.1f} MB gzip ({len(layer_tar) / 1e6:.1f} MB)")


def verify(args) -> int:
    problems = []

    def check(ok, what):
        if not ok:
            problems.append(what)
        return ok

    with tarfile.open(args.file) as tf:
        files = {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}
    check(json.loads(files.get("oci-layout", b"{}")).get("imageLayoutVersion") == "1.0.0",
          "oci-layout missing or not 1.0.0")

    def blob(desc, what):
        name = "blobs/sha256/" + desc["digest"].split(":", 1)[1]
        data = files.get(name)
        if not check(data is not None, f"{what}: blob {name} missing"):
            return b""
        check(sha256(data) == desc["digest"], f"{what}: digest mismatch")
        check(len(data) == desc["size"], f"{what}: size {len(data)} != {desc['size']}")
        return data

    index = json.loads(files["index.json"])
    check(index.get("schemaVersion") == 2, "index.json schemaVersion != 2")
    check(len(index.get("manifests", [])) == 1, "index.json: expected one manifest")
    mdesc = index["manifests"][0]
    ref = mdesc.get("annotations", {}).get("org.opencontainers.image.ref.name")
    check(ref, "index.json: no org.opencontainers.image.ref.name annotation")
    if args.ref:
        check(ref == args.ref, f"ref.name {ref} != {args.ref}")
    check(mdesc.get("mediaType") == MT_MANIFEST, "index: manifest mediaType")
    manifest = json.loads(blob(mdesc, "manifest"))
    check(manifest.get("schemaVersion") == 2, "manifest schemaVersion != 2")
    config = json.loads(blob(manifest["config"], "config"))
    cc = config.get("config", {})
    check(cc.get("User") == USER, f"config User {cc.get('User')!r} != {USER}")
    check(cc.get("Entrypoint") == ENTRYPOINT, f"config Entrypoint {cc.get('Entrypoint')}")
    check(config.get("os") == "linux" and config.get("architecture") == "amd64", "platform")
    layers = manifest.get("layers", [])
    check(len(layers) == 1, "expected one layer")
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    listing = {}
    for i, ldesc in enumerate(layers):
        data = blob(ldesc, f"layer {i}")
        raw = gzip.decompress(data) if ldesc["mediaType"].endswith("+gzip") else data
        check(i < len(diff_ids) and sha256(raw) == diff_ids[i], f"layer {i}: diff_id mismatch")
        with tarfile.open(fileobj=io.BytesIO(raw)) as lt:
            for m in lt.getmembers():
                listing[m.name.rstrip("/")] = m
    for b in BINARIES:
        m = listing.get("usr/local/bin/" + b)
        if check(m is not None and m.isfile(), f"layer lacks usr/local/bin/{b}"):
            check(m.mode & 0o111 == 0o111, f"{b} not executable by all")
            check(m.uid == 0 and m.gid == 0, f"{b} not root-owned")
    check("etc/passwd" not in listing, "layer has /etc/passwd")
    check("tmp" in listing and listing["tmp"].mode == 0o1777, "layer lacks /tmp 1777")
    print(f"{args.file}: ref {ref}; manifest {mdesc['digest']}; config {manifest['config']['digest']}")
    print(f"  User {cc.get('User')}, Entrypoint {cc.get('Entrypoint')}")
    for name in sorted(listing):
        m = listing[name]
        print(f"  {oct(m.mode)[2:]:>5} {m.uid}:{m.gid} {m.size:>10} /{name}")
    if problems:
        for p in problems:
            print("PROBLEM:", p, file=sys.stderr)
        return 1
    print("image layout OK: digests and sizes match")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    src = w.add_mutually_exclusive_group(required=True)
    src.add_argument("--bin-dir", help="directory with the three edgeway binaries")
    src.add_argument("--pause", help="a static pause binary: write the e2e sandbox image")
    src.add_argument("--binary", help="a dynamically linked binary: an image of it and its libraries")
    w.add_argument("--out", required=True)
    w.add_argument("--ref", required=True)
    w.add_argument("--version", default="dev")
    w.add_argument("--epoch", type=int, default=int(os.environ.get("SOURCE_DATE_EPOCH", "0")))
    v = sub.add_parser("verify")
    v.add_argument("file")
    v.add_argument("--ref")
    args = p.parse_args()
    if args.cmd == "write":
        write(args)
        return 0
    return verify(args)


if __name__ == "__main__":
    sys.exit(main())
