"""Z.ai (api.z.ai, USD): the international site of Zhipu's GLM platform.

Same console endpoints and answers as `zhipu` (see that module): wallet
`/api/biz/account/query-customer-account-report` and Coding Plan windows
`/api/monitor/usage/quota/limit`. Amounts are USD here. Whether api.z.ai serves the wallet
at all is unverified (docs/providers.md): without it a plan key gets a QUOTA result, and a
key with neither gets "no balance API". Bearer auth is tried first on this site.
"""

from __future__ import annotations

from bot.billing.providers.zhipu import BEARER, ZhipuProvider


class ZaiProvider(ZhipuProvider):
    id = "zai"
    title = "Z.ai"
    hint = "Z.ai GLM (api.z.ai): wallet and Coding Plan"
    default_base_url = "https://api.z.ai"
    order = 111
    currency = "USD"
    first_auth = BEARER


PROVIDER = ZaiProvider()
