// Deliberately misformatted: proves that scripts/check_format.sh fails on a .clang-format
// violation (the CTest case format_check_catches_violations).
namespace prewarm {
int   Misformatted( int a,int b ){return a+b;}
}  // namespace prewarm
