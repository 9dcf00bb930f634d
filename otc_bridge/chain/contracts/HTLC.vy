# pragma version 0.4.3
# pragma evm-version cancun
# pragma optimize gas
"""
@title Hash-time-locked swaps of ETH and ERC-20 tokens (the OTC bridge's quote leg)
@license MIT
@notice A buyer locks ETH or tokens for a seller under a sha256 hashlock. Anyone who
        knows the 32-byte preimage may claim before the timelock, and the funds always
        go to the seller; from the timelock on, anyone may refund them to the buyer.
        Each swap ends exactly once, claimed or refunded.
@dev Timelocks are unix seconds compared with block.timestamp. A timelock T is valid
     when now + 1 h <= T <= now + 7 d (both bounds inclusive, "now" is the creating
     block's timestamp). claim() needs block.timestamp < T, refund() block.timestamp >= T,
     so exactly one of the two is possible at any time.
     Token swaps record the balance the contract actually received (fee-on-transfer
     tokens), and accept tokens whose transfer functions return nothing. Tokens whose
     balances change on their own (rebasing) are not supported: all swaps of one token
     share the contract's balance.
"""

from ethereum.ercs import IERC20

# Shortest and longest lock a swap may be created with, in seconds from the creating block.
MIN_LOCK_SECONDS: public(constant(uint256)) = 3600
MAX_LOCK_SECONDS: public(constant(uint256)) = 604800

# Swap states, as swaps() reports them. 0 is "no such swap".
STATE_OPEN: constant(uint8) = 1
STATE_CLAIMED: constant(uint8) = 2
STATE_REFUNDED: constant(uint8) = 3

ADDRESS_BITS: constant(uint256) = 160
ADDRESS_MASK: constant(uint256) = (1 << 160) - 1


# What swaps() returns: one swap, unpacked.
struct Swap:
    buyer: address
    seller: address
    token: address
    amount: uint256
    hashlock: bytes32
    timelock: uint256
    state: uint8


# How a swap is stored. Vyper gives every struct member its own 32-byte slot, so the
# small fields share a word with an address: a new ETH swap writes four non-zero slots
# instead of six, which saves about 44k gas on every create.
struct Stored:
    buyer_state: uint256     # buyer in bits 0..159, state in bits 160..167
    seller_timelock: uint256  # seller in bits 0..159, timelock in bits 160..255
    token: address
    amount: uint256
    hashlock: bytes32


event SwapCreated:
    swapId: indexed(bytes32)
    buyer: indexed(address)
    seller: indexed(address)
    token: address
    amount: uint256
    hashlock: bytes32
    timelock: uint256
    rtcOrderId: String[64]

event SwapClaimed:
    swapId: indexed(bytes32)
    preimage: bytes32

event SwapRefunded:
    swapId: indexed(bytes32)


_swaps: HashMap[bytes32, Stored]

# Swaps created so far by each sender: the next swap's id is derived from it.
nonces: public(HashMap[address, uint256])


@external
@payable
@nonreentrant
def createSwapETH(seller: address, hashlock: bytes32, timelock: uint256, rtcOrderId: String[64]) -> bytes32:
    """
    @notice Lock msg.value wei for `seller` until `timelock`.
    @param seller Who a claim pays.
    @param hashlock sha256 of the 32-byte preimage.
    @param timelock Unix seconds, in [now + MIN_LOCK_SECONDS, now + MAX_LOCK_SECONDS].
    @param rtcOrderId The bridge's order this swap pays for (at most 64 bytes), logged only.
    @return The new swap's id.
    """
    assert msg.value > 0, "amount is zero"
    return self._create(msg.sender, seller, empty(address), msg.value, hashlock, timelock, rtcOrderId)


@external
@nonreentrant
def createSwapERC20(
    seller: address,
    token: address,
    amount: uint256,
    hashlock: bytes32,
    timelock: uint256,
    rtcOrderId: String[64],
) -> bytes32:
    """
    @notice Take `amount` base units of `token` from msg.sender (transferFrom, so approve
            first) and lock what arrives for `seller` until `timelock`.
    @dev The swap's amount is the contract's balance increase, which is less than
         `amount` for a token that charges a fee on transfer.
    @return The new swap's id.
    """
    assert token != empty(address), "token is zero: use createSwapETH"
    assert token.is_contract, "token has no code"
    assert amount > 0, "amount is zero"
    before: uint256 = staticcall IERC20(token).balanceOf(self)
    assert extcall IERC20(token).transferFrom(msg.sender, self, amount, default_return_value=True), "transferFrom failed"
    received: uint256 = staticcall IERC20(token).balanceOf(self) - before
    assert received > 0, "nothing received"
    return self._create(msg.sender, seller, token, received, hashlock, timelock, rtcOrderId)


@external
@nonreentrant
def claim(swapId: bytes32, preimage: bytes32):
    """
    @notice Pay an open swap to its seller. Anyone may send this; it needs the preimage
            and block.timestamp < timelock.
    """
    stored: Stored = self._swaps[swapId]
    buyer: address = self._address_of(stored.buyer_state)
    assert self._high_bits(stored.buyer_state) == convert(STATE_OPEN, uint256), "swap not open"
    assert block.timestamp < self._high_bits(stored.seller_timelock), "timelock reached"
    assert sha256(preimage) == stored.hashlock, "wrong preimage"
    # Effects before the payment, so a re-entering receiver finds the swap closed.
    self._swaps[swapId].buyer_state = self._pack(buyer, convert(STATE_CLAIMED, uint256))
    log SwapClaimed(swapId=swapId, preimage=preimage)
    self._pay(stored.token, self._address_of(stored.seller_timelock), stored.amount)


@external
@nonreentrant
def refund(swapId: bytes32):
    """
    @notice Give an open swap back to its buyer. Anyone may send this; it needs
            block.timestamp >= timelock.
    """
    stored: Stored = self._swaps[swapId]
    buyer: address = self._address_of(stored.buyer_state)
    assert self._high_bits(stored.buyer_state) == convert(STATE_OPEN, uint256), "swap not open"
    assert block.timestamp >= self._high_bits(stored.seller_timelock), "timelock not reached"
    self._swaps[swapId].buyer_state = self._pack(buyer, convert(STATE_REFUNDED, uint256))
    log SwapRefunded(swapId=swapId)
    self._pay(stored.token, buyer, stored.amount)


@view
@external
def swaps(swapId: bytes32) -> Swap:
    """
    @notice One swap; every field is zero (state 0) when no swap has this id.
    @dev state: 1 open, 2 claimed, 3 refunded.
    """
    stored: Stored = self._swaps[swapId]
    return Swap(
        buyer=self._address_of(stored.buyer_state),
        seller=self._address_of(stored.seller_timelock),
        token=stored.token,
        amount=stored.amount,
        hashlock=stored.hashlock,
        timelock=self._high_bits(stored.seller_timelock),
        state=convert(self._high_bits(stored.buyer_state), uint8),
    )


@internal
def _create(
    buyer: address,
    seller: address,
    token: address,
    amount: uint256,
    hashlock: bytes32,
    timelock: uint256,
    rtcOrderId: String[64],
) -> bytes32:
    assert seller != empty(address), "seller is zero"
    assert timelock >= block.timestamp + MIN_LOCK_SECONDS, "timelock too soon"
    assert timelock <= block.timestamp + MAX_LOCK_SECONDS, "timelock too far"
    # The id depends on the sender's own counter only (no block data), so a client can
    # know it before the transaction is mined.
    nonce: uint256 = self.nonces[buyer]
    swapId: bytes32 = keccak256(abi_encode(chain.id, self, buyer, nonce))
    self.nonces[buyer] = nonce + 1
    assert self._swaps[swapId].buyer_state == 0, "swap id exists"
    self._swaps[swapId] = Stored(
        buyer_state=self._pack(buyer, convert(STATE_OPEN, uint256)),
        seller_timelock=self._pack(seller, timelock),
        token=token,
        amount=amount,
        hashlock=hashlock,
    )
    log SwapCreated(
        swapId=swapId,
        buyer=buyer,
        seller=seller,
        token=token,
        amount=amount,
        hashlock=hashlock,
        timelock=timelock,
        rtcOrderId=rtcOrderId,
    )
    return swapId


@internal
def _pay(token: address, receiver: address, amount: uint256):
    if token == empty(address):
        # All gas forwarded so contract wallets can receive; a receiver that reverts
        # makes the whole call revert and leaves the swap open.
        raw_call(receiver, b"", value=amount)
    else:
        assert extcall IERC20(token).transfer(receiver, amount, default_return_value=True), "transfer failed"


@pure
@internal
def _pack(account: address, high: uint256) -> uint256:
    # `high` is a state (8 bits) or a timelock, bounded by the 7-day rule to far below 2**96.
    return convert(account, uint256) | (high << ADDRESS_BITS)


@pure
@internal
def _address_of(word: uint256) -> address:
    return convert(convert(word & ADDRESS_MASK, uint160), address)


@pure
@internal
def _high_bits(word: uint256) -> uint256:
    return word >> ADDRESS_BITS
