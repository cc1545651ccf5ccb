"""The control plane's errors, one tree (api/ maps each to an HTTP status in one table)."""


class BalancerError(Exception):
    """Base of the control plane's errors (the service's and the controller's).

    BalancerError
    ├── NotFound        the VIP or backend does not exist
    ├── AlreadyExists   the VIP or backend is already there
    ├── CapacityError   a size limit (VIPs, backends) is reached
    ├── InvalidInput    a value the data plane cannot take
    └── StoreError      the desired-state store cannot be opened or refused a commit
        ├── StoreFull   the store's disk is full
        ├── Conflict    another host committed a change this host had not applied yet
        └── Unavailable the store cannot be reached (etcd): nothing was changed
    """


class NotFound(BalancerError):
    pass


class AlreadyExists(BalancerError):
    pass


class CapacityError(BalancerError):
    pass


class InvalidInput(BalancerError):
    pass


class StoreError(BalancerError):
    """The store cannot be opened, is of another schema version, or refused a commit."""


class StoreFull(StoreError):
    pass


class Conflict(StoreError):
    """Retry once this host has applied the other change (its watch brings it within ms)."""


class Unavailable(StoreError):
    pass
