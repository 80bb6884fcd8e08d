"""fleetd: an asynchronous fleet manager for Docker hosts."""

import warnings

# asyncssh (the ssh:// transport) still imports cryptography's DSA support, which cryptography 51
# deprecates with a warning at import; fleetd never offers or accepts DSA keys, so it says nothing
# an operator can act on.
warnings.filterwarnings("ignore", message="DSA is deprecated", category=UserWarning)
