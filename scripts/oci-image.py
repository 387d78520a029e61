#!/usr/bin/env python3
"""Packs one dynamically linked binary into an OCI image-layout archive, FROM scratch.

No base image is pulled and no container engine runs: the single layer holds the binary at
/usr/local/bin/<name>, exactly the shared libraries `ldd` resolves for it (and the dynamic
loader), each at the path the loader looks for it, plus what a distroless "nonroot" image
carries: /etc/passwd and /etc/group with root and nonroot (65532), /etc/nsswitch.conf, an empty
/tmp and /home/nonroot, and optionally a CA bundle. No shell, no package manager.

The archive is deterministic: the same inputs give the same bytes and so the same digests.
Tar entries are sorted, owned by 0:0 (nonroot's home by 65532), dated --created (the commit
time, SOURCE_DATE_EPOCH) and written as plain ustar (no pax headers, so no atime/ctime).
The layer is left uncompressed: nothing to make reproducible about gzip, and the archive is a
local transfer format, not a registry push.

Output: an OCI image layout (oci-layout, index.json, blobs/sha256/...) as a tar file, whose
index names the image twice: org.opencontainers.image.ref.name = the tag (what skopeo's
oci-archive:FILE:TAG selects) and io.containerd.image.name = the full reference (what
`ctr images import` names the image by). Prints the manifest digest and the size of the
uncompressed layer (the image's size on disk once unpacked, in bytes) on stdout.

Example:
  scripts/oci-image.py --binary target/release/quotestream-worker \\
      --name ghcr.io/quotestream/quotestream-worker:0.1.0 --created "$(git log -1 --format=%ct)" \\
      --ca-certs /etc/ssl/certs/ca-certificates.crt --out target/images/quotestream-worker.oci.tar
"""

import argparse
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import time

NONROOT = 65532

# ELF e_machine -> OCI architecture (the config must name the architecture the binary runs on,
# not the one this script happens to run on).
ELF_ARCH = {0x3E: "amd64", 0xB7: "arm64", 0x03: "386", 0x28: "arm", 0xF3: "riscv64", 0x15: "ppc64le", 0x16: "s390x"}

PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
GROUP = "root:x:0:\nnonroot:x:65532:\n"
# glibc's default without this file is "dns [!UNAVAIL=return] files": DNS before /etc/hosts,
# which the kubelet writes. Files first, as on distroless.
NSSWITCH = "passwd: files\ngroup: files\nhosts: files dns\n"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", required=True, help="the executable to pack (dynamically or statically linked ELF)")
    p.add_argument("--name", required=True, help="full image reference, REPOSITORY:TAG")
    p.add_argument("--out", required=True, help="the .oci.tar file to write")
    p.add_argument("--created", type=int, default=int(os.environ.get("SOURCE_DATE_EPOCH", "0")),
                   help="Unix time for every mtime and the created fields (default: $SOURCE_DATE_EPOCH, else 0)")
    p.add_argument("--cmd", type=json.loads, default=["run"], metavar="JSON",
                   help='default arguments (Cmd) as a JSON array, like a Dockerfile CMD; default: ["run"]')
    p.add_argument("--port", action="append", default=[], help="exposed port, e.g. 8080/tcp (repeatable)")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                   help="image label, e.g. org.opencontainers.image.revision=abc (repeatable)")
    p.add_argument("--ca-certs", help="CA bundle to install at /etc/ssl/certs/ca-certificates.crt")
    p.add_argument("--add", action="append", default=[], metavar="SRC[:DST]",
                   help="also a file or a directory tree at DST (default: SRC); the shared libraries of every "
                        "ELF file among them come along (for test images of other programs; repeatable)")
    return p.parse_args(argv)


def is_elf(path):
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def elf_arch(path):
    with open(path, "rb") as f:
        head = f.read(20)
    if head[:4] != b"\x7fELF":
        sys.exit(f"oci-image: {path} is not an ELF executable")
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    if machine not in ELF_ARCH:
        sys.exit(f"oci-image: unknown ELF machine {machine:#x} in {path}")
    return ELF_ARCH[machine]


def shared_libraries(binary):
    """The absolute paths ldd resolves for the binary: libraries and the loader (PT_INTERP)."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True)
    text = out.stdout + out.stderr
    if "not a dynamic executable" in text or "statically linked" in text:
        return []
    if out.returncode != 0:
        sys.exit(f"oci-image: ldd {binary} failed:\n{text}")
    paths = []
    for line in out.stdout.splitlines():
        line = line.strip()
        if "not found" in line:
            sys.exit(f"oci-image: {binary} needs a library this machine lacks: {line}")
        # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)";
        # the vDSO ("linux-vdso.so.1 (0x...)") has no path and is provided by the kernel.
        m = re.match(r"(?:\S+ => )?(/\S+) \(0x[0-9a-f]+\)$", line)
        if m:
            paths.append(m.group(1))
    return sorted(set(paths))


class Tar:
    """A deterministic tar: entries sorted, parent directories implied, fixed metadata.
    File contents are bytes or a path on disk, streamed (a debug binary is hundreds of MB)."""

    def __init__(self, mtime):
        self.mtime = mtime
        self.entries = {}  # path -> (type, mode, uid, bytes | source path | None)

    def add_dir(self, path, mode=0o755, uid=0):
        self.entries[path.strip("/")] = (tarfile.DIRTYPE, mode, uid, None)

    def add_file(self, path, content, mode=0o644):
        path = path.strip("/")
        self.entries[path] = (tarfile.REGTYPE, mode, 0, content)
        parent = os.path.dirname(path)
        while parent and parent not in self.entries:
            self.add_dir(parent)
            parent = os.path.dirname(parent)

    def write(self, path):
        with tarfile.open(path, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name in sorted(self.entries):
                kind, mode, uid, content = self.entries[name]
                info = tarfile.TarInfo(name + "/" if kind == tarfile.DIRTYPE else name)
                info.type, info.mode, info.mtime = kind, mode, self.mtime
                info.uid = info.gid = uid
                info.uname = info.gname = ""
                if content is None:
                    tar.addfile(info)
                elif isinstance(content, bytes):
                    info.size = len(content)
                    tar.addfile(info, io.BytesIO(content))
                else:
                    # open() follows symlinks: the image holds the file itself.
                    with open(content, "rb") as f:
                        info.size = os.fstat(f.fileno()).st_size
                        tar.addfile(info, f)


def additions(specs):
    """(source file, path in the image) for every --add: a file, or each file below a directory
    (symlinks followed: the image holds the files themselves)."""
    out = []
    for spec in specs:
        src, _, dst = spec.partition(":")
        dst = dst or src
        if os.path.isdir(src):
            for root, _, files in os.walk(src, followlinks=True):
                for name in files:
                    path = os.path.join(root, name)
                    out.append((path, os.path.join(dst, os.path.relpath(path, src))))
        elif os.path.isfile(src):
            out.append((src, dst))
        else:
            sys.exit(f"oci-image: --add {spec}: {src} is neither a file nor a directory")
    return sorted(out)


def rootfs(args, bin_name):
    layer = Tar(args.created)
    layer.add_file(f"/usr/local/bin/{bin_name}", args.binary, 0o755)
    for lib in shared_libraries(args.binary):
        # At the path ldd printed: the loader at its PT_INTERP path (/lib64/...), the libraries
        # in a directory on the loader's built-in search path (there is no ld.so.cache).
        layer.add_file(lib, lib, os.stat(lib).st_mode & 0o755)
    for src, dst in additions(args.add):
        layer.add_file(dst, src, os.stat(src).st_mode & 0o755)
        if is_elf(src):
            for lib in shared_libraries(src):
                layer.add_file(lib, lib, os.stat(lib).st_mode & 0o755)
    layer.add_file("/etc/passwd", PASSWD.encode())
    layer.add_file("/etc/group", GROUP.encode())
    layer.add_file("/etc/nsswitch.conf", NSSWITCH.encode())
    if args.ca_certs:
        layer.add_file("/etc/ssl/certs/ca-certificates.crt", args.ca_certs)
    layer.add_dir("/home", 0o755)
    layer.add_dir("/home/nonroot", 0o700, NONROOT)
    layer.add_dir("/tmp", 0o1777)
    return layer


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def descriptor(media_type, data):
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}


def dumps(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def main(argv):
    args = parse_args(argv)
    _, sep, tag = args.name.rpartition(":")
    if not sep or "/" in tag:
        sys.exit(f"oci-image: --name must be REPOSITORY:TAG, not {args.name}")
    bin_name = os.path.basename(args.binary)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(args.created))
    labels = dict(label.split("=", 1) for label in args.label)
    labels["org.opencontainers.image.created"] = created

    elves = [args.binary] + [src for src, _ in additions(args.add)]
    arch = elf_arch(next((path for path in elves if is_elf(path)), args.binary))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    layer_path = args.out + ".layer.tmp"
    rootfs(args, bin_name).write(layer_path)
    layer_hex = sha256_file(layer_path)
    layer_desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + layer_hex,
                  "size": os.path.getsize(layer_path)}
    config = dumps({
        "architecture": arch,
        "os": "linux",
        "created": created,
        "config": {
            "User": f"{NONROOT}:{NONROOT}",
            "Entrypoint": [f"/usr/local/bin/{bin_name}"],
            "Cmd": [str(word) for word in args.cmd],
            "ExposedPorts": {port: {} for port in args.port},
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
            "WorkingDir": "/",
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
        "history": [{"created": created, "created_by": "scripts/oci-image.py"}],
    })
    manifest = dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [layer_desc],
    })
    manifest_desc = descriptor("application/vnd.oci.image.manifest.v1+json", manifest)
    manifest_desc["annotations"] = {"io.containerd.image.name": args.name, "org.opencontainers.image.ref.name": tag}
    manifest_desc["platform"] = {"architecture": arch, "os": "linux"}
    index = dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [manifest_desc],
    })

    archive = Tar(args.created)
    archive.add_file("oci-layout", dumps({"imageLayoutVersion": "1.0.0"}))
    archive.add_file("index.json", index)
    archive.add_file("blobs/sha256/" + layer_hex, layer_path)
    for blob in (config, manifest):
        archive.add_file("blobs/sha256/" + hashlib.sha256(blob).hexdigest(), blob)
    tmp = args.out + ".tmp"
    archive.write(tmp)
    os.replace(tmp, args.out)
    os.remove(layer_path)
    print(manifest_desc["digest"], layer_desc["size"])


if __name__ == "__main__":
    main(sys.argv[1:])
