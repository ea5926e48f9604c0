#!/bin/sh
# ckptd's venv for `make install`: install-venv.sh PYTHON PREFIX [DESTDIR]
#
# The venv is made to run at PREFIX. With DESTDIR (staging for a package) it is built at
# DESTDIR/PREFIX, and then every path pip and venv wrote into it (script shebangs, activate,
# pyvenv.cfg, the source paths compiled into .pyc files) is rewritten to PREFIX, so the tree runs
# once it is moved or unpacked to PREFIX, and no longer runs from the staging folder.
#
# The venv links to the Python it was made with (the base interpreter and its standard library
# stay where they are). When that Python lives under /root or /home (pyenv, a user's build), the
# unit's ProtectHome=yes would hide it, so a drop-in replaces /root and /home with an empty
# tmpfs and binds back, read-only, only that Python's folder.
set -eu

python=$1
prefix=$2
destdir=${3:-}
root=$destdir$prefix

"$python" -m venv "$root"
"$root/bin/pip" install -q --upgrade pip
"$root/bin/pip" install -q .

if [ -n "$destdir" ]; then
	grep -rlI -- "$root" "$root/bin" "$root/pyvenv.cfg" | while read -r file; do
		sed -i "s|$root|$prefix|g" "$file"
	done
	"$root/bin/python" -m compileall -q -f -s "$destdir" -p / "$root/lib" >/dev/null
fi

base=$("$python" -c 'import os, sys; print(os.path.realpath(sys.base_prefix))')
drop_in=$destdir/etc/systemd/system/ckptd.service.d/python-home.conf
hidden=""
for path in "$base" "$prefix"; do
	case $path in
	/root | /root/* | /home | /home/* | /run/user/*) hidden="$hidden $path" ;;
	esac
done

if [ -n "$hidden" ]; then
	install -d "$(dirname "$drop_in")"
	cat >"$drop_in" <<EOF
# Written by \`make install\`: ckptd's venv runs on a Python under a home folder, which the
# unit's ProtectHome=yes would hide. /root and /home become an empty tmpfs with only these
# folders bound back, read-only. Remove this file if ckptd is reinstalled on a system Python.
[Service]
ProtectHome=tmpfs
BindReadOnlyPaths=${hidden# }
EOF
	echo "ckptd's Python is under a home folder: wrote $drop_in"
else
	rm -f "$drop_in"
fi
