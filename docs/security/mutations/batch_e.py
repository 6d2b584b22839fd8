#!/usr/bin/env python3
# Mutations of issue 13 verification batch e (docs/security/VERIFIED.md): run from the
# repository root on commit 2d8a93d or later; undo with `git checkout -- host pool`.
from edit import sub
# item 10: with a separate admin listener, the public listener serves the admin API too
sub('host/src/gateway/mod.rs','''            let public = public_router(state.clone(), options.clone());''','''            let public = router_with(state.clone(), options.clone());''')
# item 4: a request that opened no pool keeps the storm-control token it took
sub('pool/src/tenants.rs','''        self.inner().admission.refund(client);''','''        let _ = client;''')
