#!/usr/bin/env python3
# Mutation of issue 13 verification batch f (docs/security/VERIFIED.md): run from the
# repository root; undo with `git checkout -- host`. Usage: batch_f.py [KIB] (default 256).
import sys
from edit import sub
kib = int(sys.argv[1]) if len(sys.argv) > 1 else 256
# item 1: the host's room on a plugin's fiber, above the guest's own stack, cut from 2 MiB
sub('host/src/runtime/engine.rs','''const HOST_STACK_BYTES: usize = 2 << 20;''',f'''const HOST_STACK_BYTES: usize = {kib} << 10;''')
