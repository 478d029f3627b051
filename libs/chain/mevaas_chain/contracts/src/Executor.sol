// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import "Interfaces.sol";
import "FlashLenders.sol";

/// @title MEVaaS executor
/// @notice Runs a 2- or 3-hop arbitrage cycle through Uniswap V2 pairs and Uniswap V3 pools,
/// either with tokens the contract holds or capital-free through a flash swap on the first (V2)
/// pair. Amounts are computed on-chain at execution time (a V2 pair's reserves, a V3 pool's own
/// exact-input swap), so the cycle input is the only amount the caller fixes. A V3 pool is paid in
/// its swap callback, which only a pool of an allowed V3 factory, the one being called, may make. Also liquidates Aave V3 positions (`liquidate*`): the debt is repaid from the
/// contract's inventory, an Aave flash loan or a V2 flash swap, and the seized collateral is sold
/// back into the debt token so the profit is realised in one token. And deleverages a protected
/// Aave V3 position (`deleverage`: a flash loan repays debt on the account's behalf, its aTokens are
/// withdrawn and sold to repay the loan, and the account must end at or above a health factor). Every entry point that moves funds is
/// owner-only.
contract Executor {
    struct Hop {
        // The V2 pair or V3 pool.
        address pair;
        // true: the hop sells the pool's token0 for token1.
        bool zeroForOne;
        // V2 pair fee in basis points (30 for Uniswap V2); a V3 pool charges its own fee.
        uint16 feeBps;
        // HOP_V2 or HOP_V3.
        uint8 kind;
    }

    /// One Aave V3 liquidationCall and what to do with the collateral it seizes.
    struct Liquidation {
        address pool;
        address collateral;
        address debt;
        address borrower;
        uint256 debtToCover;
        bool receiveAToken;
        // collateral -> ... -> debt, 1-3 hops; empty: the collateral is kept.
        Hop[] swap;
        // Minimum profit in the debt token when the collateral is sold; the minimum collateral
        // received when it is kept.
        uint256 minProfit;
    }

    /// Repay ``repay`` of an Aave V3 account's ``debt`` with ``collateralAmount`` of its
    /// ``collateral`` (the account approved that aToken to this contract), financed by the pool's
    /// flashLoanSimple; the account's health factor must end at or above ``minHealthFactor``.
    struct Deleverage {
        address pool;
        address account;
        address collateral;
        address debt;
        uint256 repay;
        uint256 collateralAmount;
        // collateral -> ... -> debt, 1-3 hops; empty only when collateral == debt.
        Hop[] swap;
        uint256 minHealthFactor;
    }

    /// Who a backrun refunds and how much: `bps` of the profit, plus (gasless) the user's gas.
    struct Refund {
        address to;
        uint16 bps;
        uint256 gasUsed;
        uint256 maxFee;
        uint256 tip;
    }

    uint8 private constant FINANCING_INVENTORY = 0;
    uint8 private constant FINANCING_FLASH_LOAN = 1;
    uint8 private constant FINANCING_FLASH_SWAP = 2;

    uint8 private constant HOP_V2 = 0;
    uint8 private constant HOP_V3 = 1;
    // TickMath's bounds, exclusive: the loosest price limits a V3 swap accepts.
    uint160 private constant MIN_SQRT_RATIO = 4295128739;
    uint160 private constant MAX_SQRT_RATIO = 1461446703485210103287273052203988822378723970342;

    address public owner;
    mapping(address => bool) public allowedFactory;
    mapping(address => bool) public allowedV3Factory;

    // Pair we expect the flash callback from; non-zero only while executeFlash or
    // liquidateFlashSwap runs (liquidating, when that one runs).
    address private flashPair;
    bool private transient liquidating;
    // Aave pool we expect executeOperation from; non-zero only while liquidateFlashLoan runs.
    address private transient flashLender;
    // What the liquidation inside a flash callback repaid and received, and (flash swap) what is
    // left of the collateral's proceeds once the pair is paid.
    uint256 private transient lastRepaid;
    uint256 private transient lastReceived;
    uint256 private transient lastLeftover;
    // True only while deleverage's flash loan runs: executeOperation repays with collateral.
    bool private transient deleveraging;
    // True only while executeFlashLoan's flash loan runs: executeOperation runs the cycle.
    bool private transient cycling;
    // V3 pool we expect a callback from; non-zero only while this contract is calling it.
    address private transient v3Callee;

    event Executed(address indexed token, uint256 amountIn, uint256 profit, bool flash);
    /// profit: the change of the contract's debt-token balance (negative when the collateral is
    /// kept); financing: 0 inventory, 1 Aave flash loan, 2 Uniswap V2 flash swap.
    event Liquidated(
        address indexed borrower,
        address indexed collateral,
        address indexed debt,
        uint256 debtRepaid,
        uint256 collateralReceived,
        int256 profit,
        uint8 financing
    );
    /// surplus: what the sale brought beyond the loan and its premium, sent to the account.
    event Deleveraged(
        address indexed account,
        address indexed collateral,
        address indexed debt,
        uint256 repaid,
        uint256 collateralWithdrawn,
        uint256 surplus,
        uint256 healthFactor
    );
    /// A back-run of a user's transaction: profit is the cycle's gain before the refund, refund
    /// what `refundTo` received of it (its share, plus its gas when that share left enough).
    event Backrun(address indexed token, address indexed refundTo, uint256 profit, uint256 refund, uint256 gasRefund);
    event FactoryAllowed(address indexed factory, bool allowed);
    event V3FactoryAllowed(address indexed factory, bool allowed);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    error NotOwner();
    error BadPath();
    error NotGenuinePair();
    error NotGenuinePool();
    error FactoryNotAllowed();
    error InsufficientProfit(uint256 profit, uint256 minProfit);
    error TransferFailed();
    error NotGenuineLender();
    error HealthFactorTooLow(uint256 healthFactor, uint256 minHealthFactor);

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    constructor(address owner_, address[] memory factories) {
        owner = owner_;
        emit OwnershipTransferred(address(0), owner_);
        for (uint256 i = 0; i < factories.length; i++) {
            allowedFactory[factories[i]] = true;
            emit FactoryAllowed(factories[i], true);
        }
    }

    receive() external payable {}

    function transferOwnership(address newOwner) external onlyOwner {
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    function setFactory(address factory, bool allowed) external onlyOwner {
        allowedFactory[factory] = allowed;
        emit FactoryAllowed(factory, allowed);
    }

    function setV3Factory(address factory, bool allowed) external onlyOwner {
        allowedV3Factory[factory] = allowed;
        emit V3FactoryAllowed(factory, allowed);
    }

    function withdraw(address token, address to, uint256 amount) external onlyOwner {
        _transfer(token, to, amount);
    }

    function withdrawETH(address payable to, uint256 amount) external onlyOwner {
        (bool ok, ) = to.call{value: amount}("");
        if (!ok) revert TransferFailed();
    }

    /// @notice Cycle with the contract's own `tokenIn` balance; reverts unless the balance grows
    /// by at least `minProfit`.
    function execute(address tokenIn, uint256 amountIn, Hop[] calldata hops, uint256 minProfit)
        external
        onlyOwner
        returns (uint256 profit)
    {
        _checkPath(tokenIn, hops);
        uint256 before = IERC20Minimal(tokenIn).balanceOf(address(this));
        if (hops[0].kind == HOP_V2) _transfer(tokenIn, hops[0].pair, amountIn);
        _swapChain(hops, 0, amountIn);
        profit = _profit(tokenIn, before, minProfit);
        emit Executed(tokenIn, amountIn, profit, false);
    }

    /// @notice Back-run a user's transaction (placed before this one in the same bundle) with a
    /// cycle from inventory and pay `r.to` `r.bps` of the profit in `tokenIn`. Gasless: when
    /// `tokenIn` is the wrapped native coin, the user's gas (`r.gasUsed` at the price its fees
    /// pay in this block: min(maxFee, basefee + tip)) is paid too, if what is left still clears
    /// `minProfit`. Reverts unless the contract keeps at least `minProfit` after the refund.
    function backrun(address tokenIn, uint256 amountIn, Hop[] calldata hops, uint256 minProfit, Refund calldata r)
        external
        onlyOwner
        returns (uint256 kept)
    {
        if (r.bps > 10_000) revert BadPath();
        _checkPath(tokenIn, hops);
        uint256 before = IERC20Minimal(tokenIn).balanceOf(address(this));
        if (hops[0].kind == HOP_V2) _transfer(tokenIn, hops[0].pair, amountIn);
        _swapChain(hops, 0, amountIn);
        uint256 profit = _profit(tokenIn, before, 0);
        uint256 refund = (profit * r.bps) / 10_000;
        uint256 price = block.basefee + r.tip < r.maxFee ? block.basefee + r.tip : r.maxFee;
        uint256 gasRefund = r.gasUsed * price;
        uint256 gasPaid = profit - refund >= gasRefund + minProfit ? gasRefund : 0;
        refund += gasPaid;
        if (profit - refund < minProfit) revert InsufficientProfit(profit - refund, minProfit);
        if (refund > 0) _transfer(tokenIn, r.to, refund);
        kept = profit - refund;
        emit Backrun(tokenIn, r.to, profit, refund, gasPaid);
    }

    /// @notice Capital-free cycle: the first pair lends its output through a flash swap, the rest of
    /// the cycle turns it back into `tokenIn`, and the first pair is repaid `amountIn` from that.
    function executeFlash(
        address factory,
        address tokenIn,
        uint256 amountIn,
        Hop[] calldata hops,
        uint256 minProfit
    ) external onlyOwner returns (uint256 profit) {
        if (!allowedFactory[factory]) revert FactoryNotAllowed();
        _checkPath(tokenIn, hops);
        // The first hop lends through a V2 flash swap.
        if (hops[0].kind != HOP_V2) revert BadPath();
        uint256 before = IERC20Minimal(tokenIn).balanceOf(address(this));
        _flashBorrow(abi.encode(factory, tokenIn, amountIn, hops), hops[0], amountIn);
        profit = _profit(tokenIn, before, minProfit);
        emit Executed(tokenIn, amountIn, profit, true);
    }

    function uniswapV2Call(address sender, uint256 amount0, uint256 amount1, bytes calldata data) external {
        // Only the pair this contract is flash-borrowing from, mid-executeFlash, may call back.
        if (sender != address(this) || msg.sender != flashPair || msg.sender == address(0)) {
            revert NotGenuinePair();
        }
        // Both payloads start with the factory the pair must belong to.
        address factory = abi.decode(data[:32], (address));
        if (!allowedFactory[factory]) revert FactoryNotAllowed();
        address token0 = IUniswapV2PairMinimal(msg.sender).token0();
        address token1 = IUniswapV2PairMinimal(msg.sender).token1();
        if (IUniswapV2FactoryMinimal(factory).getPair(token0, token1) != msg.sender) revert NotGenuinePair();
        if (liquidating) {
            (, Liquidation memory l) = abi.decode(data, (address, Liquidation));
            _liquidationFlashSwapped(l);
            return;
        }
        (, address tokenIn, uint256 amountIn, Hop[] memory hops) = abi.decode(data, (address, address, uint256, Hop[]));
        uint256 received = amount0 + amount1;
        address mid = hops[0].zeroForOne ? token1 : token0;
        if (hops[1].kind == HOP_V2) _transfer(mid, hops[1].pair, received);
        _swapChainMemory(hops, 1, hops.length, received);
        _transfer(tokenIn, msg.sender, amountIn);
    }

    // --- Uniswap V3 -----------------------------------------------------------------------------

    /// Pays the V3 pool this contract is swapping on what it owes for the swap: only that pool may
    /// call, once per swap, and only for a positive delta of the token the hop sells.
    function uniswapV3SwapCallback(int256 amount0Delta, int256 amount1Delta, bytes calldata data) external {
        address pool = _takeCallback();
        (bool zeroForOne, address tokenIn) = abi.decode(data, (bool, address));
        int256 owed = zeroForOne ? amount0Delta : amount1Delta;
        if (owed <= 0) revert NotGenuinePool();
        _transfer(tokenIn, pool, uint256(owed));
    }

    // Arms the V3 callback check for `pool`, which this contract has verified and is about to call.
    function _expectCallback(address pool) private {
        v3Callee = pool;
    }

    // The pool expected to call back, which must be the caller (never zero: no call comes from
    // address 0); disarms the check so the pool can call back only once.
    function _takeCallback() private returns (address pool) {
        pool = v3Callee;
        if (msg.sender != pool) revert NotGenuinePool();
        v3Callee = address(0);
    }

    // Exact-input swap of `amountIn` on a genuine V3 pool, its output paid to `to` and its input
    // paid from this contract's balance in the callback.
    function _swapV3(Hop memory hop, uint256 amountIn, address to) private returns (uint256 out) {
        // Checked here, not on the path, so V2 hops pay nothing for it.
        if (hop.kind != HOP_V3 || amountIn > uint256(type(int256).max)) revert BadPath();
        bytes memory data;
        {
            (address token0, address token1) = _verifyV3Pool(hop.pair);
            data = abi.encode(hop.zeroForOne, hop.zeroForOne ? token0 : token1);
        }
        _expectCallback(hop.pair);
        (int256 amount0, int256 amount1) = IUniswapV3PoolMinimal(hop.pair).swap(
            to, hop.zeroForOne, int256(amountIn), hop.zeroForOne ? MIN_SQRT_RATIO + 1 : MAX_SQRT_RATIO - 1, data
        );
        out = uint256(-(hop.zeroForOne ? amount1 : amount0));
    }

    // `pool`'s tokens, once it is known to be what an allowed V3 factory deployed for its own
    // tokens and fee (a contract merely claiming an allowed factory is not in that factory's map).
    function _verifyV3Pool(address pool) private view returns (address token0, address token1) {
        IUniswapV3PoolMinimal p = IUniswapV3PoolMinimal(pool);
        address factory = p.factory();
        if (!allowedV3Factory[factory]) revert FactoryNotAllowed();
        (token0, token1) = (p.token0(), p.token1());
        if (IUniswapV3FactoryMinimal(factory).getPool(token0, token1, p.fee()) != pool) revert NotGenuinePool();
    }

    // --- flash-loan cycles (Aave V3 flashLoanSimple) -----------------------------------------------

    /// @notice Capital-free cycle financed by an Aave V3 pool's flashLoanSimple of `amountIn` of
    /// `tokenIn`: executeOperation runs the whole cycle and the pool pulls back the loan plus its
    /// premium (amountIn.percentMul(FLASHLOAN_PREMIUM_TOTAL)), so the profit is net of it.
    function executeFlashLoan(
        address pool,
        address tokenIn,
        uint256 amountIn,
        Hop[] calldata hops,
        uint256 minProfit
    ) external onlyOwner returns (uint256 profit) {
        _checkPath(tokenIn, hops);
        uint256 before = IERC20Minimal(tokenIn).balanceOf(address(this));
        flashLender = pool;
        cycling = true;
        IAaveV3PoolMinimal(pool).flashLoanSimple(address(this), tokenIn, amountIn, abi.encode(hops), 0);
        cycling = false;
        flashLender = address(0);
        profit = _profit(tokenIn, before, minProfit);
        emit Executed(tokenIn, amountIn, profit, true);
    }

    function _cycleFlashLoaned(address asset, uint256 amount, bytes calldata params) private {
        Hop[] memory hops = abi.decode(params, (Hop[]));
        if (hops[0].kind == HOP_V2) _transfer(asset, hops[0].pair, amount);
        _swapChainMemory(hops, 0, hops.length, amount);
    }

    // --- liquidations ---------------------------------------------------------------------------

    /// @notice Liquidation paid from the contract's own debt-token balance; the seized collateral
    /// is sold along `l.swap` (or kept when it is empty).
    function liquidate(Liquidation calldata l) external onlyOwner returns (int256 profit) {
        Liquidation memory m = l;
        _checkLiquidation(m);
        uint256 before = IERC20Minimal(m.debt).balanceOf(address(this));
        (uint256 repaid, uint256 received) = _liquidate(m);
        if (m.swap.length == 0) {
            if (received < m.minProfit) revert InsufficientProfit(received, m.minProfit);
        } else {
            _sell(m.swap, m.collateral, received);
        }
        profit = _settle(m, before, repaid, received, FINANCING_INVENTORY);
    }

    /// @notice Capital-free liquidation: the pool lends `debtToCover` through flashLoanSimple and
    /// pulls it back with its premium once executeOperation has liquidated and sold.
    function liquidateFlashLoan(Liquidation calldata l) external onlyOwner returns (int256 profit) {
        Liquidation memory m = l;
        if (m.swap.length == 0) revert BadPath();
        _checkLiquidation(m);
        uint256 before = IERC20Minimal(m.debt).balanceOf(address(this));
        flashLender = m.pool;
        IAaveV3PoolMinimal(m.pool).flashLoanSimple(address(this), m.debt, m.debtToCover, abi.encode(m), 0);
        flashLender = address(0);
        profit = _settle(m, before, lastRepaid, lastReceived, FINANCING_FLASH_LOAN);
    }

    function executeOperation(
        address asset,
        uint256 amount,
        uint256 premium,
        address initiator,
        bytes calldata params
    ) external returns (bool) {
        // Only the pool this contract is borrowing from, mid-liquidateFlashLoan, for a loan this
        // contract initiated, may call back.
        if (msg.sender != flashLender || msg.sender == address(0) || initiator != address(this)) {
            revert NotGenuineLender();
        }
        if (deleveraging) {
            _repayWithCollateral(abi.decode(params, (Deleverage)));
            _approve(asset, msg.sender, amount + premium);
            return true;
        }
        if (cycling) {
            _cycleFlashLoaned(asset, amount, params);
            _approve(asset, msg.sender, amount + premium);
            return true;
        }
        Liquidation memory l = abi.decode(params, (Liquidation));
        (uint256 repaid, uint256 received) = _liquidate(l);
        _sell(l.swap, l.collateral, received);
        (lastRepaid, lastReceived) = (repaid, received);
        _approve(asset, msg.sender, amount + premium);
        return true;
    }

    /// @notice Capital-free liquidation through a flash swap on the last pair of `l.swap` (of
    /// `factory`): the pair lends `debtToCover` of the debt token and is paid, inside its
    /// callback, in its other token (what the collateral sold into along the earlier hops); what
    /// is left of that is sold through the same pair once it is unlocked.
    function liquidateFlashSwap(address factory, Liquidation calldata l) external onlyOwner returns (int256 profit) {
        if (!allowedFactory[factory]) revert FactoryNotAllowed();
        Liquidation memory m = l;
        if (m.swap.length == 0) revert BadPath();
        _checkLiquidation(m);
        uint256 before = IERC20Minimal(m.debt).balanceOf(address(this));
        Hop memory last = m.swap[m.swap.length - 1];
        // The last hop lends the debt through a V2 flash swap.
        if (last.kind != HOP_V2) revert BadPath();
        (uint256 out0, uint256 out1) = last.zeroForOne ? (uint256(0), m.debtToCover) : (m.debtToCover, uint256(0));
        flashPair = last.pair;
        liquidating = true;
        IUniswapV2PairMinimal(last.pair).swap(out0, out1, address(this), abi.encode(factory, m));
        liquidating = false;
        flashPair = address(0);
        uint256 leftover = lastLeftover;
        if (leftover > 0) {
            address mid = last.zeroForOne
                ? IUniswapV2PairMinimal(last.pair).token0()
                : IUniswapV2PairMinimal(last.pair).token1();
            _transfer(mid, last.pair, leftover);
            _swap(last, leftover, address(this));
        }
        profit = _settle(m, before, lastRepaid, lastReceived, FINANCING_FLASH_SWAP);
    }

    function _liquidationFlashSwapped(Liquidation memory l) private {
        (uint256 repaid, uint256 received) = _liquidate(l);
        uint256 n = l.swap.length;
        Hop memory last = l.swap[n - 1];
        // The collateral, sold along every hop but the last, into the flash pair's other token.
        uint256 proceeds = received;
        address mid = l.collateral;
        if (n > 1) {
            if (l.swap[0].kind == HOP_V2) _transfer(l.collateral, l.swap[0].pair, received);
            proceeds = _swapChainMemory(l.swap, 0, n - 1, received);
            IUniswapV2PairMinimal p = IUniswapV2PairMinimal(last.pair);
            mid = last.zeroForOne ? p.token0() : p.token1();
        }
        uint256 owed = _amountIn(last, l.debtToCover);
        if (proceeds < owed) revert InsufficientProfit(0, l.minProfit);
        _transfer(mid, msg.sender, owed);
        (lastRepaid, lastReceived, lastLeftover) = (repaid, received, proceeds - owed);
    }

    // --- leverage protection ---------------------------------------------------------------------

    /// @notice Deleverage ``d.account``: the pool lends ``d.repay`` of the debt, executeOperation
    /// repays it on the account's behalf, pulls ``d.collateralAmount`` of its aTokens, withdraws
    /// them and sells the collateral for the loan plus premium; reverts unless the account's
    /// health factor (the pool's getUserAccountData) ends at or above ``d.minHealthFactor``.
    function deleverage(Deleverage calldata d) external onlyOwner returns (uint256 healthFactor) {
        Deleverage memory m = d;
        if (m.collateral == m.debt ? m.swap.length != 0 : m.swap.length == 0) revert BadPath();
        if (m.swap.length > 0) _checkRoute(m.swap, m.collateral, m.debt);
        uint256 before = IERC20Minimal(m.debt).balanceOf(address(this));
        flashLender = m.pool;
        deleveraging = true;
        IAaveV3PoolMinimal(m.pool).flashLoanSimple(address(this), m.debt, m.repay, abi.encode(m), 0);
        deleveraging = false;
        flashLender = address(0);
        (, , , , , healthFactor) = IAaveV3PoolMinimal(m.pool).getUserAccountData(m.account);
        if (healthFactor < m.minHealthFactor) revert HealthFactorTooLow(healthFactor, m.minHealthFactor);
        uint256 surplus = IERC20Minimal(m.debt).balanceOf(address(this)) - before;
        if (surplus > 0) _transfer(m.debt, m.account, surplus);
        emit Deleveraged(m.account, m.collateral, m.debt, lastRepaid, lastReceived, surplus, healthFactor);
    }

    // --- flash cycles: a Uniswap V3 pool's flash, the Balancer V2 vault's flashLoan ---------------

    // The Balancer V2 vault receiveFlashLoan is accepted from.
    address public balancerVault;

    event BalancerVaultSet(address indexed vault);

    function setBalancerVault(address vault) external onlyOwner {
        balancerVault = vault;
        emit BalancerVaultSet(vault);
    }

    /// @notice Capital-free cycle financed by a Uniswap V3 pool's flash of `amountIn` of `tokenIn`:
    /// the pool (genuine, of an allowed factory, not one of the cycle's hops) lends it,
    /// uniswapV3FlashCallback runs the cycle and repays the loan plus the pool's fee
    /// (FullMath.mulDivRoundingUp(amountIn, fee, 1e6)), so the profit is net of it.
    function executeFlashV3(
        address pool,
        address tokenIn,
        uint256 amountIn,
        Hop[] calldata hops,
        uint256 minProfit
    ) external onlyOwner returns (uint256 profit) {
        _checkPath(tokenIn, hops);
        (address token0, address token1) = _verifyV3Pool(pool);
        if (tokenIn != token0 && tokenIn != token1) revert BadPath();
        // The pool is locked while it lends: a hop through it would revert, and say so less clearly.
        for (uint256 i = 0; i < hops.length; i++) {
            if (hops[i].pair == pool) revert BadPath();
        }
        uint256 before = IERC20Minimal(tokenIn).balanceOf(address(this));
        (uint256 amount0, uint256 amount1) = tokenIn == token0 ? (amountIn, uint256(0)) : (uint256(0), amountIn);
        _expectCallback(pool);
        IUniswapV3FlashPool(pool).flash(address(this), amount0, amount1, abi.encode(tokenIn, amountIn, hops));
        profit = _profit(tokenIn, before, minProfit);
        emit Executed(tokenIn, amountIn, profit, true);
    }

    function uniswapV3FlashCallback(uint256 fee0, uint256 fee1, bytes calldata data) external {
        // Only the pool executeFlashV3 is borrowing from, mid-call; its data is then ours.
        address pool = _takeCallback();
        (address tokenIn, uint256 amountIn, Hop[] memory hops) = abi.decode(data, (address, uint256, Hop[]));
        _sell(hops, tokenIn, amountIn);
        // One token was lent, so the other's fee is 0.
        _transfer(tokenIn, pool, amountIn + fee0 + fee1);
    }

    /// @notice Capital-free cycle financed by the configured Balancer V2 vault's flashLoan of
    /// `amountIn` of `tokenIn`: receiveFlashLoan runs the cycle and pays back the loan plus the
    /// vault's fee (amountIn.mulUp(the fees collector's flash-loan fee percentage)).
    function executeFlashBalancer(address tokenIn, uint256 amountIn, Hop[] calldata hops, uint256 minProfit)
        external
        onlyOwner
        returns (uint256 profit)
    {
        address vault = balancerVault;
        if (vault == address(0)) revert NotGenuineLender();
        _checkPath(tokenIn, hops);
        uint256 before = IERC20Minimal(tokenIn).balanceOf(address(this));
        address[] memory tokens = new address[](1);
        uint256[] memory amounts = new uint256[](1);
        (tokens[0], amounts[0]) = (tokenIn, amountIn);
        _expectCallback(vault);
        IBalancerVaultFlashLoans(vault).flashLoan(address(this), tokens, amounts, abi.encode(tokenIn, amountIn, hops));
        profit = _profit(tokenIn, before, minProfit);
        emit Executed(tokenIn, amountIn, profit, true);
    }

    function receiveFlashLoan(
        address[] calldata tokens,
        uint256[] calldata amounts,
        uint256[] calldata feeAmounts,
        bytes calldata userData
    ) external {
        // Anyone may ask the vault to flash-lend to this contract: only the configured vault,
        // mid-executeFlashBalancer, with the loan that call asked for, is served.
        if (msg.sender != balancerVault) revert NotGenuineLender();
        address vault = _takeCallback();
        (address tokenIn, uint256 amountIn, Hop[] memory hops) = abi.decode(userData, (address, uint256, Hop[]));
        if (tokens.length != 1 || tokens[0] != tokenIn || amounts[0] != amountIn) revert NotGenuineLender();
        _sell(hops, tokenIn, amountIn);
        // The vault checks its balance afterwards: repaid by transfer, not approval.
        _transfer(tokenIn, vault, amountIn + feeAmounts[0]);
    }

    function _repayWithCollateral(Deleverage memory d) private {
        _approve(d.debt, d.pool, d.repay);
        uint256 repaid = IAaveV3PoolMinimal(d.pool).repay(d.debt, d.repay, 2, d.account);
        if (repaid < d.repay) _approve(d.debt, d.pool, 0);
        address aToken = _aToken(d.pool, d.collateral);
        uint256 held = IERC20Minimal(aToken).balanceOf(address(this));
        if (!IERC20TransferFrom(aToken).transferFrom(d.account, address(this), d.collateralAmount)) {
            revert TransferFailed();
        }
        // All of what arrived: with none held before, max burns exactly the scaled amount moved
        // (rayDiv(rayMul(s, i), i) == s), where the amount could round one wei either way.
        uint256 amount = held == 0 ? type(uint256).max : IERC20Minimal(aToken).balanceOf(address(this)) - held;
        uint256 withdrawn = IAaveV3PoolMinimal(d.pool).withdraw(d.collateral, amount, address(this));
        if (d.swap.length > 0) _sell(d.swap, d.collateral, withdrawn);
        (lastRepaid, lastReceived) = (repaid, withdrawn);
    }

    // Repays up to debtToCover (approved exactly, the allowance cleared if less was taken) and
    // measures what was repaid and seized from the balances it moved.
    function _liquidate(Liquidation memory l) private returns (uint256 repaid, uint256 received) {
        address seized = l.receiveAToken ? _aToken(l.pool, l.collateral) : l.collateral;
        uint256 debtBefore = IERC20Minimal(l.debt).balanceOf(address(this));
        uint256 collateralBefore = IERC20Minimal(seized).balanceOf(address(this));
        _approve(l.debt, l.pool, l.debtToCover);
        IAaveV3PoolMinimal(l.pool).liquidationCall(l.collateral, l.debt, l.borrower, l.debtToCover, l.receiveAToken);
        repaid = debtBefore - IERC20Minimal(l.debt).balanceOf(address(this));
        received = IERC20Minimal(seized).balanceOf(address(this)) - collateralBefore;
        if (repaid < l.debtToCover) _approve(l.debt, l.pool, 0);
    }

    function _settle(Liquidation memory l, uint256 before, uint256 repaid, uint256 received, uint8 financing)
        private
        returns (int256 profit)
    {
        uint256 afterBalance = IERC20Minimal(l.debt).balanceOf(address(this));
        profit = int256(afterBalance) - int256(before);
        if (l.swap.length > 0 && profit < int256(l.minProfit)) {
            revert InsufficientProfit(profit > 0 ? uint256(profit) : 0, l.minProfit);
        }
        emit Liquidated(l.borrower, l.collateral, l.debt, repaid, received, profit, financing);
    }

    // The route must lead from the collateral to the debt token; aTokens cannot be sold on it.
    function _checkLiquidation(Liquidation memory l) private view {
        if (l.collateral == l.debt) revert BadPath();
        uint256 n = l.swap.length;
        if (n == 0) return;
        if (l.receiveAToken) revert BadPath();
        _checkRoute(l.swap, l.collateral, l.debt);
    }

    // 1-3 pools leading from `from` to `to` (a V3 pool has the same token0/token1 getters).
    function _checkRoute(Hop[] memory hops, address from, address to) private view {
        uint256 n = hops.length;
        if (n == 0 || n > 3) revert BadPath();
        address token = from;
        for (uint256 i = 0; i < n; i++) {
            IUniswapV2PairMinimal pair = IUniswapV2PairMinimal(hops[i].pair);
            (address tIn, address tOut) =
                hops[i].zeroForOne ? (pair.token0(), pair.token1()) : (pair.token1(), pair.token0());
            if (tIn != token) revert BadPath();
            token = tOut;
        }
        if (token != to) revert BadPath();
    }

    function _sell(Hop[] memory hops, address token, uint256 amount) private {
        if (hops[0].kind == HOP_V2) _transfer(token, hops[0].pair, amount);
        _swapChainMemory(hops, 0, hops.length, amount);
    }

    // Pool.getReserveData(asset).aTokenAddress: the 9th word of the (all-static) ReserveData.
    function _aToken(address pool, address asset) private view returns (address aToken) {
        (bool ok, bytes memory ret) = pool.staticcall(abi.encodeWithSignature("getReserveData(address)", asset));
        if (!ok || ret.length < 9 * 32) revert BadPath();
        assembly {
            aToken := mload(add(ret, 288))
        }
    }

    function _flashBorrow(bytes memory data, Hop calldata first, uint256 amountIn) private {
        uint256 out = _amountOut(first, amountIn);
        (uint256 out0, uint256 out1) = first.zeroForOne ? (uint256(0), out) : (out, uint256(0));
        flashPair = first.pair;
        IUniswapV2PairMinimal(first.pair).swap(out0, out1, address(this), data);
        flashPair = address(0);
    }

    function _checkPath(address tokenIn, Hop[] calldata hops) private view {
        uint256 n = hops.length;
        if (n < 2 || n > 3) revert BadPath();
        address token = tokenIn;
        for (uint256 i = 0; i < n; i++) {
            IUniswapV2PairMinimal pair = IUniswapV2PairMinimal(hops[i].pair);
            (address tIn, address tOut) =
                hops[i].zeroForOne ? (pair.token0(), pair.token1()) : (pair.token1(), pair.token0());
            if (tIn != token) revert BadPath();
            token = tOut;
        }
        if (token != tokenIn) revert BadPath();
    }

    function _profit(address tokenIn, uint256 before, uint256 minProfit) private view returns (uint256 profit) {
        uint256 afterBalance = IERC20Minimal(tokenIn).balanceOf(address(this));
        profit = afterBalance > before ? afterBalance - before : 0;
        if (afterBalance < before || profit < minProfit) revert InsufficientProfit(profit, minProfit);
    }

    // Input tokens for hop `start` are already in its pair (V2) or this contract (V3); each hop
    // sends its output straight to the next V2 pair, otherwise to this contract, which pays a V3
    // pool in its callback.
    function _swapChain(Hop[] calldata hops, uint256 start, uint256 amountIn) private {
        uint256 amount = amountIn;
        uint256 n = hops.length;
        // Each hop is copied from calldata once, read as the next hop's recipient and then swapped.
        Hop memory hop = hops[start];
        for (uint256 i = start; i < n; i++) {
            Hop memory next = i + 1 < n ? hops[i + 1] : hop;
            amount = _swap(hop, amount, i + 1 < n && next.kind == HOP_V2 ? next.pair : address(this));
            hop = next;
        }
    }

    // Hops [start, end): each sends its output to the next V2 pair (a V3 pool is paid by this
    // contract), hop end - 1 to this contract.
    function _swapChainMemory(Hop[] memory hops, uint256 start, uint256 end, uint256 amountIn)
        private
        returns (uint256 amount)
    {
        amount = amountIn;
        for (uint256 i = start; i < end; i++) {
            amount = _swap(hops[i], amount, i + 1 < end && hops[i + 1].kind == HOP_V2 ? hops[i + 1].pair : address(this));
        }
    }

    function _swap(Hop memory hop, uint256 amountIn, address to) private returns (uint256 out) {
        if (hop.kind != HOP_V2) return _swapV3(hop, amountIn, to);
        out = _amountOut(hop, amountIn);
        (uint256 out0, uint256 out1) = hop.zeroForOne ? (uint256(0), out) : (out, uint256(0));
        IUniswapV2PairMinimal(hop.pair).swap(out0, out1, to, new bytes(0));
    }

    // UniswapV2Library.getAmountOut with the fee in basis points (997/1000 == 9970/10000 exactly).
    function _amountOut(Hop memory hop, uint256 amountIn) private view returns (uint256) {
        (uint112 r0, uint112 r1, ) = IUniswapV2PairMinimal(hop.pair).getReserves();
        (uint256 reserveIn, uint256 reserveOut) = hop.zeroForOne ? (uint256(r0), uint256(r1)) : (uint256(r1), uint256(r0));
        uint256 amountInWithFee = amountIn * (10000 - hop.feeBps);
        return (amountInWithFee * reserveOut) / (reserveIn * 10000 + amountInWithFee);
    }

    // UniswapV2Library.getAmountIn: what the pair must receive for `amountOut` of its output.
    function _amountIn(Hop memory hop, uint256 amountOut) private view returns (uint256) {
        (uint112 r0, uint112 r1, ) = IUniswapV2PairMinimal(hop.pair).getReserves();
        (uint256 reserveIn, uint256 reserveOut) = hop.zeroForOne ? (uint256(r0), uint256(r1)) : (uint256(r1), uint256(r0));
        return (reserveIn * amountOut * 10000) / ((reserveOut - amountOut) * (10000 - hop.feeBps)) + 1;
    }

    // Tolerates tokens that return nothing from approve (USDT-style).
    function _approve(address token, address spender, uint256 amount) private {
        (bool ok, bytes memory ret) = token.call(abi.encodeWithSignature("approve(address,uint256)", spender, amount));
        if (!ok || (ret.length != 0 && !abi.decode(ret, (bool)))) revert TransferFailed();
    }

    // Tolerates tokens that return nothing from transfer (USDT-style).
    function _transfer(address token, address to, uint256 amount) private {
        (bool ok, bytes memory ret) = token.call(abi.encodeWithSelector(IERC20Minimal.transfer.selector, to, amount));
        if (!ok || (ret.length != 0 && !abi.decode(ret, (bool)))) revert TransferFailed();
    }
}
