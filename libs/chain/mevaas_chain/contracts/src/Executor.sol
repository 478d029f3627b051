// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

interface IERC20Minimal {
    function balanceOf(address account) external view returns (uint256);
    function transfer(address to, uint256 amount) external returns (bool);
}

interface IUniswapV2PairMinimal {
    function token0() external view returns (address);
    function token1() external view returns (address);
    function getReserves() external view returns (uint112 reserve0, uint112 reserve1, uint32 blockTimestampLast);
    function swap(uint256 amount0Out, uint256 amount1Out, address to, bytes calldata data) external;
}

interface IUniswapV2FactoryMinimal {
    function getPair(address tokenA, address tokenB) external view returns (address pair);
}

/// @title MEVaaS cycle executor
/// @notice Runs a 2- or 3-hop arbitrage cycle through Uniswap V2 pairs, either with tokens the
/// contract holds or capital-free through a flash swap on the first pair. Amounts are computed
/// on-chain from each pair's reserves at execution time, so the cycle input is the only amount
/// the caller fixes. Every entry point that moves funds is owner-only.
contract Executor {
    struct Hop {
        address pair;
        // true: the hop sells the pair's token0 for token1.
        bool zeroForOne;
        // Pool fee in basis points (30 for Uniswap V2).
        uint16 feeBps;
    }

    address public owner;
    mapping(address => bool) public allowedFactory;

    // Pair we expect the flash callback from; non-zero only while executeFlash runs.
    address private flashPair;

    event Executed(address indexed token, uint256 amountIn, uint256 profit, bool flash);
    event FactoryAllowed(address indexed factory, bool allowed);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    error NotOwner();
    error BadPath();
    error NotGenuinePair();
    error FactoryNotAllowed();
    error InsufficientProfit(uint256 profit, uint256 minProfit);
    error TransferFailed();

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
        _transfer(tokenIn, hops[0].pair, amountIn);
        _swapChain(hops, 0, amountIn);
        profit = _profit(tokenIn, before, minProfit);
        emit Executed(tokenIn, amountIn, profit, false);
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
        (address factory, address tokenIn, uint256 amountIn, Hop[] memory hops) =
            abi.decode(data, (address, address, uint256, Hop[]));
        if (!allowedFactory[factory]) revert FactoryNotAllowed();
        address token0 = IUniswapV2PairMinimal(msg.sender).token0();
        address token1 = IUniswapV2PairMinimal(msg.sender).token1();
        if (IUniswapV2FactoryMinimal(factory).getPair(token0, token1) != msg.sender) revert NotGenuinePair();

        uint256 received = amount0 + amount1;
        address mid = hops[0].zeroForOne ? token1 : token0;
        _transfer(mid, hops[1].pair, received);
        _swapChainMemory(hops, 1, received);
        _transfer(tokenIn, msg.sender, amountIn);
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

    // Input tokens for hop `start` are already in its pair; each hop sends its output straight to
    // the next pair, the last one to this contract.
    function _swapChain(Hop[] calldata hops, uint256 start, uint256 amountIn) private {
        uint256 amount = amountIn;
        uint256 n = hops.length;
        for (uint256 i = start; i < n; i++) {
            amount = _swap(hops[i], amount, i + 1 < n ? hops[i + 1].pair : address(this));
        }
    }

    function _swapChainMemory(Hop[] memory hops, uint256 start, uint256 amountIn) private {
        uint256 amount = amountIn;
        uint256 n = hops.length;
        for (uint256 i = start; i < n; i++) {
            amount = _swap(hops[i], amount, i + 1 < n ? hops[i + 1].pair : address(this));
        }
    }

    function _swap(Hop memory hop, uint256 amountIn, address to) private returns (uint256 out) {
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

    // Tolerates tokens that return nothing from transfer (USDT-style).
    function _transfer(address token, address to, uint256 amount) private {
        (bool ok, bytes memory ret) = token.call(abi.encodeWithSelector(IERC20Minimal.transfer.selector, to, amount));
        if (!ok || (ret.length != 0 && !abi.decode(ret, (bool)))) revert TransferFailed();
    }
}
