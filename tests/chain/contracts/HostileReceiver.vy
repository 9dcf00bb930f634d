# pragma version 0.4.3
# pragma evm-version cancun
# pragma optimize gas
"""
@title Test only: a contract party to HTLC swaps that misbehaves when paid
@notice As seller or buyer it receives ETH from claim() or refund(). In mode REENTER_CLAIM
        or REENTER_REFUND it calls back into the HTLC once, for swap `target`, and records
        whether that call went through (it must not); the outer payment still completes,
        so a test can check the amount arrived once. In mode REJECT it reverts on payment.
"""

MODE_ACCEPT: constant(uint8) = 0
MODE_REENTER_CLAIM: constant(uint8) = 1
MODE_REENTER_REFUND: constant(uint8) = 2
MODE_REJECT: constant(uint8) = 3

interface HTLC:
    def createSwapETH(seller: address, hashlock: bytes32, timelock: uint256, rtcOrderId: String[64]) -> bytes32: payable
    def refund(swapId: bytes32): nonpayable

htlc: public(address)
mode: public(uint8)
target: public(bytes32)
preimage: public(bytes32)
attempts: public(uint256)
reentered: public(bool)
received: public(uint256)


@deploy
def __init__(_htlc: address):
    self.htlc = _htlc


@external
def configure(_mode: uint8, _target: bytes32, _preimage: bytes32):
    self.mode = _mode
    self.target = _target
    self.preimage = _preimage
    self.attempts = 0


@external
@payable
def createSwap(_seller: address, _hashlock: bytes32, _timelock: uint256) -> bytes32:
    # This contract becomes the swap's buyer, so refund() pays it.
    return extcall HTLC(self.htlc).createSwapETH(_seller, _hashlock, _timelock, "hostile", value=msg.value)


@external
def callRefund(_swapId: bytes32):
    extcall HTLC(self.htlc).refund(_swapId)


@external
@payable
def __default__():
    if self.mode == MODE_REJECT:
        raise "rejecting payment"
    self.received += msg.value
    if self.mode == MODE_ACCEPT or self.attempts > 0:
        return
    self.attempts += 1
    payload: Bytes[68] = b""
    if self.mode == MODE_REENTER_CLAIM:
        payload = abi_encode(self.target, self.preimage, method_id=method_id("claim(bytes32,bytes32)"))
    else:
        payload = abi_encode(self.target, method_id=method_id("refund(bytes32)"))
    self.reentered = raw_call(self.htlc, payload, revert_on_failure=False)
